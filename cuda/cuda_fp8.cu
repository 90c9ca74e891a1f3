// Float8 scaling and quantization (docs/numerics.md §3) over the scalar numerics the CPU uses
// (engine/numerics/fp8.h, fp8_scale.h), so the codes and scales match the CPU's to the bit.
#include <algorithm>

#include "cuda/cublaslt_gemm.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/fp8.h"
#include "engine/numerics/fp8_scale.h"

namespace qtune::gpu {
namespace {

constexpr int kAmaxThreads = 256;

// NaN sticks, as in torch's amax.
__device__ __forceinline__ double amax_combine(double m, double a) {
  return (isnan(m) || a > m || isnan(a)) ? (isnan(m) ? m : a) : m;
}

// Combines every thread's amax in a fixed tree; thread 0 finds the block's in shared[0].
__device__ void block_amax(double m, double* shared) {
  shared[threadIdx.x] = m;
  __syncthreads();
  for (int stride = kAmaxThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride)
      shared[threadIdx.x] = amax_combine(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
}

// One block per scale slot: the slot's group is a row (per_row), a column (per_col) or the whole tensor;
// the block reduces its group's max |x| in a fixed tree and thread 0 writes the scale.
template <class T>
__global__ void scale_kernel(const T* x, int64_t rows, int64_t cols, bool per_row, bool per_col, double fp8_max,
                             bool pow2, float* scale) {
  QTUNE_SHARED(double, shared, kAmaxThreads);
  const int64_t slot = blockIdx.x;
  const int64_t count = per_row ? cols : (per_col ? rows : rows * cols);
  double m = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kAmaxThreads) {
    const int64_t offset = per_row ? slot * cols + i : (per_col ? i * cols + slot : i);
    m = amax_combine(m, fabs(static_cast<double>(load(x + offset))));
  }
  block_amax(m, shared);
  if (threadIdx.x == 0) scale[slot] = numerics::fp8_scale_of(shared[0], fp8_max, pow2);
}

// Tensorwise amax in two passes, so a large tensor is read by many blocks: each block writes the max |x|
// of its grid-stride share, then one block combines the partials (max is order-free, NaN sticks) and
// writes the scale.
template <class T>
__global__ void partial_amax_kernel(const T* x, int64_t n, double* partial) {
  QTUNE_SHARED(double, shared, kAmaxThreads);
  double m = 0.0;
  for (int64_t i = thread_index(); i < n; i += thread_count())
    m = amax_combine(m, fabs(static_cast<double>(load(x + i))));
  block_amax(m, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = shared[0];
}

__global__ void scale_from_partials_kernel(const double* partial, int64_t count, double fp8_max, bool pow2,
                                           float* scale) {
  QTUNE_SHARED(double, shared, kAmaxThreads);
  double m = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kAmaxThreads) m = amax_combine(m, partial[i]);
  block_amax(m, shared);
  if (threadIdx.x == 0) scale[0] = numerics::fp8_scale_of(shared[0], fp8_max, pow2);
}

template <class Fmt, class T>
__global__ void quantize_kernel(const T* x, const float* scale, int64_t rows, int64_t cols, bool per_row, bool per_col,
                                uint8_t* codes) {
  using A = acc_t<T>;
  for (int64_t i = thread_index(); i < rows * cols; i += thread_count()) {
    const int64_t slot = per_row ? i / cols : (per_col ? i % cols : 0);
    codes[i] = numerics::encode_fp8<Fmt>(static_cast<A>(load(x + i)) * static_cast<A>(scale[slot]));
  }
}

// cuBLASLt's scales multiply the codes: the reciprocals of qtune's multiplier scales, computed where they are.
// factors[i] = 1 / scale[i] for i < n, or 1 / scale[0] for every i when the scale is tensorwise: the
// dequantization factors cuBLASLt multiplies by.
__global__ void dequant_factors(const float* scale, bool per_row, int64_t n, float* factors) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) factors[i] = 1.0f / scale[per_row ? i : 0];
}

// codes: [R, K]; scale: one per tensor or per row -> out: [R, K] f32, as the CPU dequantizes.
__global__ void dequantize_kernel(const uint8_t* codes, const float* scale, bool e4m3, bool per_row, int64_t rows,
                                  int64_t cols, float* out) {
  for (int64_t i = thread_index(); i < rows * cols; i += thread_count())
    out[i] = numerics::fp8_dequantize(codes[i], e4m3, scale[per_row ? i / cols : 0]);
}

bool per_row(const Tensor& x, const Tensor& scale) { return scale.size(0) == x.size(0) && scale.size(0) > 1; }
bool per_col(const Tensor& x, const Tensor& scale) { return scale.size(1) == x.size(1) && scale.size(1) > 1; }

}  // namespace

void CudaBackend::fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale) {
  check_fp8_args("fp8_scale", x, scale, Tensor());
  // One block per scale slot: an empty scale means nothing to launch (a zero-block grid is an error).
  if (scale.numel() == 0) return;
  activate();
  const int64_t n = x.numel();
  if (!per_row(x, scale) && !per_col(x, scale) && n > 4 * kAmaxThreads) {
    const int64_t blocks = std::min<int64_t>((n + kAmaxThreads - 1) / kAmaxThreads, 1024);
    // Freed at return while the kernels may still run: safe, as all of the device's work is on one stream.
    const Tensor partial = Tensor::empty({blocks}, DType::f64, device());
    double* p = static_cast<double*>(partial.data_ptr());
    dispatch_float(x.dtype(), "fp8_scale", [&](auto tag) {
      using T = decltype(tag);
      launch<partial_amax_kernel<T>>(LaunchShape{static_cast<unsigned>(blocks), kAmaxThreads, 0, stream_},
                                     static_cast<const T*>(x.data_ptr()), n, p);
    });
    launch<scale_from_partials_kernel>(LaunchShape{1, kAmaxThreads, 0, stream_}, p, blocks, fp8_max, pow2,
                                       static_cast<float*>(scale.data_ptr()));
    return;
  }
  dispatch_float(x.dtype(), "fp8_scale", [&](auto tag) {
    using T = decltype(tag);
    launch<scale_kernel<T>>(LaunchShape{static_cast<unsigned>(scale.numel()), kAmaxThreads, 0, stream_},
                            static_cast<const T*>(x.data_ptr()), x.size(0), x.size(1), per_row(x, scale),
                            per_col(x, scale), fp8_max, pow2, static_cast<float*>(scale.data_ptr()));
  });
}

void CudaBackend::fp8_quantize(const Tensor& x, const Tensor& scale, const Tensor& codes) {
  QTUNE_CHECK(codes.defined(), "fp8_quantize: codes are required");
  check_fp8_args("fp8_quantize", x, scale, codes);
  const int64_t n = x.numel();
  if (n == 0) return;
  activate();
  const bool e4m3 = codes.dtype() == DType::f8_e4m3;
  dispatch_float(x.dtype(), "fp8_quantize", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x.data_ptr());
    const float* s = static_cast<const float*>(scale.data_ptr());
    uint8_t* out = static_cast<uint8_t*>(codes.data_ptr());
    if (e4m3) {
      launch<quantize_kernel<numerics::E4M3, T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, in, s, x.size(0),
                                                 x.size(1), per_row(x, scale), per_col(x, scale), out);
    } else {
      launch<quantize_kernel<numerics::E5M2, T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, in, s, x.size(0),
                                                 x.size(1), per_row(x, scale), per_col(x, scale), out);
    }
  });
}

void CudaBackend::fp8_gemm(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                           const Tensor& out) {
  check_fp8_gemm_args(a, a_scale, b, b_scale, out);
  const int64_t m = a.size(0), n = b.size(0), k = a.size(1);
  if (m == 0 || n == 0) return;
  if (k == 0) return fill(out, 0.0);
  activate();
  {
    GemmProblem p;
    p.dtype = out.dtype();
    p.a_dtype = a.dtype();
    p.b_dtype = b.dtype();
    p.trans_b = true;
    p.fp8_row_scales = a_scale.numel() > 1 || b_scale.numel() > 1;
    p.batch = 1;
    p.m = m;
    p.n = n;
    p.k = k;
    p.lda = p.ldb = k;
    p.ldc = n;
    // Tensorwise: one factor each; per-row (on either side): M factors for a, then N for b.
    const int64_t a_factors = p.fp8_row_scales ? m : 1, b_factors = p.fp8_row_scales ? n : 1;
    // b's factors start on a 256-byte boundary: cuBLASLt refuses a scale pointer that is only 4-byte aligned
    // (CUBLAS_STATUS_NOT_SUPPORTED for tensorwise scales right after a's, seen on an H200).
    const int64_t b_offset = (a_factors + 63) / 64 * 64;
    // Freed at return while the GEMM may still run: safe, as all of the device's work is on one stream.
    const Tensor factors = Tensor::empty({b_offset + b_factors}, DType::f32, device());
    float* f = static_cast<float*>(factors.data_ptr());
    launch<dequant_factors>(LaunchShape{blocks_for(a_factors), kThreads, 0, stream_},
                            static_cast<const float*>(a_scale.data_ptr()), a_scale.numel() > 1, a_factors, f);
    launch<dequant_factors>(LaunchShape{blocks_for(b_factors), kThreads, 0, stream_},
                            static_cast<const float*>(b_scale.data_ptr()), b_scale.numel() > 1, b_factors,
                            f + b_offset);
    if (gemm_->run_fp8(p, a.data_ptr(), b.data_ptr(), out.data_ptr(), f, f + b_offset, stream_)) return;
  }
  // Shapes or scales cuBLASLt's fp8 kernels refuse (K or N not a multiple of 16; per-row scales before
  // Hopper): dequantized operands through the f32 GEMM, as the CPU computes it.
  auto dequantize = [&](const Tensor& codes, const Tensor& scale) {
    const Tensor values = Tensor::empty({1, codes.size(0), codes.size(1)}, DType::f32, device());
    launch<dequantize_kernel>(LaunchShape{blocks_for(codes.numel()), kThreads, 0, stream_},
                              static_cast<const uint8_t*>(codes.data_ptr()),
                              static_cast<const float*>(scale.data_ptr()), codes.dtype() == DType::f8_e4m3,
                              scale.numel() > 1, codes.size(0), codes.size(1), static_cast<float*>(values.data_ptr()));
    return values;
  };
  const Tensor product = out.dtype() == DType::f32 ? out : Tensor::empty(out.shape(), DType::f32, device());
  gemm(dequantize(a, a_scale), false, dequantize(b, b_scale), true, product.view({1, m, n}), 1.0, 0.0);
  if (product.data_ptr() != out.data_ptr()) copy(product, out);
}

}  // namespace qtune::gpu
