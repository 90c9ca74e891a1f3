// Float8 scaling and quantization (docs/numerics.md §3) over the scalar numerics the CPU uses
// (engine/numerics/fp8.h, fp8_scale.h), so the codes and scales match the CPU's to the bit.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/fp8_scale.h"

namespace qtune::gpu {
namespace {

constexpr int kAmaxThreads = 256;

// NaN sticks, as in torch's amax.
__device__ __forceinline__ double amax_combine(double m, double a) {
  return (isnan(m) || a > m || isnan(a)) ? (isnan(m) ? m : a) : m;
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
  shared[threadIdx.x] = m;
  __syncthreads();
  for (int stride = kAmaxThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride)
      shared[threadIdx.x] = amax_combine(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  if (threadIdx.x == 0) scale[slot] = numerics::fp8_scale_of(shared[0], fp8_max, pow2);
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

bool per_row(const Tensor& x, const Tensor& scale) { return scale.size(0) == x.size(0) && scale.size(0) > 1; }
bool per_col(const Tensor& x, const Tensor& scale) { return scale.size(1) == x.size(1) && scale.size(1) > 1; }

}  // namespace

void CudaBackend::fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale) {
  check_fp8_args("fp8_scale", x, scale, Tensor());
  // One block per scale slot: an empty scale means nothing to launch (a zero-block grid is an error).
  if (scale.numel() == 0) return;
  activate();
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

}  // namespace qtune::gpu
