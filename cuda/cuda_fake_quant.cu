// QAT kernels on CUDA through the scalar reference (engine/numerics/intx_quant.h), so codes and values
// equal the CPU's bit for bit: fake quantization one group per thread, its masked backward, per-token
// int8 quantization, and the 8da4w int8 x int4 GEMM (one output per thread, int32 sums per group).
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/intx_quant.h"

namespace qtune::gpu {
namespace {

template <class T>
__global__ void fake_quantize_kernel(const T* x, T* out, uint8_t* mask, int64_t groups, int64_t group,
                                     numerics::FakeQuantSpec spec) {
  for (int64_t g = thread_index(); g < groups; g += thread_count())
    numerics::fake_quantize_group(x + g * group, group, spec, out + g * group, mask + g * group);
}

template <class T>
__global__ void masked_grad_kernel(const T* grad, const uint8_t* mask, T* grad_x, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count())
    store(grad_x + i, mask[i] ? load(grad + i) : acc_t<T>(0));
}

template <class T>
__global__ void quantize_per_token_kernel(const T* x, int8_t* codes, float* scale, int32_t* zero_point, int64_t rows,
                                          int64_t cols, numerics::FakeQuantSpec spec) {
  for (int64_t r = thread_index(); r < rows; r += thread_count()) {
    const T* row = x + r * cols;
    const auto p = numerics::intx_group_qparams(row, cols, spec);
    scale[r] = static_cast<float>(p.scale);
    zero_point[r] = p.zero_point;
    for (int64_t k = 0; k < cols; ++k)
      codes[r * cols + k] =
          static_cast<int8_t>(numerics::intx_code(load(row + k), p.scale, p.zero_point, spec.qmin, spec.qmax));
  }
}

__global__ void int8_int4_linear_kernel(const int8_t* q, const float* x_scale, const int32_t* x_zp, const uint8_t* w,
                                        const float* w_scale, float* out, int64_t n_tokens, int64_t m_out, int64_t k_in,
                                        int64_t group) {
  const int64_t groups = k_in / group;
  for (int64_t i = thread_index(); i < n_tokens * m_out; i += thread_count()) {
    const int64_t n = i / m_out, m = i % m_out;
    float acc = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      int32_t dot = 0;
      // Element by element: a group may be odd, so a packed byte can straddle two groups.
      for (int64_t k = g * group; k < (g + 1) * group; ++k) {
        const uint8_t b = w[(m * k_in + k) / 2];
        const int32_t nibble = k % 2 == 0 ? numerics::low_nibble(b) : numerics::high_nibble(b);
        dot += (q[n * k_in + k] - x_zp[n]) * (nibble - 8);
      }
      acc += static_cast<float>(dot) * w_scale[m * groups + g];
    }
    out[i] = acc * x_scale[n];
  }
}

}  // namespace

void CudaBackend::fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                                const Tensor& mask) {
  const int64_t group = check_fake_quantize_args(x, spec, out, mask);
  const int64_t groups = x.numel() / group;
  if (groups == 0) return;
  activate();
  dispatch_float(x.dtype(), "fake_quantize", [&](auto tag) {
    using T = decltype(tag);
    launch<fake_quantize_kernel<T>>(LaunchShape{blocks_for(groups), kThreads, 0, stream_},
                                    static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()),
                                    static_cast<uint8_t*>(mask.data_ptr()), groups, group, spec);
  });
}

void CudaBackend::fake_quantize_backward(const Tensor& grad_out, const Tensor& mask, const Tensor& grad_x) {
  check_fake_quantize_backward_args(grad_out, mask, grad_x);
  const int64_t n = grad_out.numel();
  if (n == 0) return;
  activate();
  dispatch_float(grad_out.dtype(), "fake_quantize_backward", [&](auto tag) {
    using T = decltype(tag);
    launch<masked_grad_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_},
                                  static_cast<const T*>(grad_out.data_ptr()),
                                  static_cast<const uint8_t*>(mask.data_ptr()), static_cast<T*>(grad_x.data_ptr()), n);
  });
}

void CudaBackend::quantize_per_token(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                                     const Tensor& scale, const Tensor& zero_point) {
  check_quantize_per_token_args(x, spec, codes, scale, zero_point);
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0) return;
  activate();
  dispatch_float(x.dtype(), "quantize_per_token", [&](auto tag) {
    using T = decltype(tag);
    launch<quantize_per_token_kernel<T>>(LaunchShape{blocks_for(rows), kThreads, 0, stream_},
                                         static_cast<const T*>(x.data_ptr()), static_cast<int8_t*>(codes.data_ptr()),
                                         static_cast<float*>(scale.data_ptr()),
                                         static_cast<int32_t*>(zero_point.data_ptr()), rows, cols, spec);
  });
}

void CudaBackend::int8_int4_linear(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp,
                                   const Tensor& w_packed, const Tensor& w_scale, const Tensor& out) {
  const int64_t group = check_int8_int4_linear_args(codes, x_scale, x_zp, w_packed, w_scale, out);
  const int64_t n_tokens = codes.size(0), k_in = codes.size(1), m_out = w_packed.size(0);
  if (n_tokens * m_out == 0) return;
  activate();
  launch<int8_int4_linear_kernel>(
      LaunchShape{blocks_for(n_tokens * m_out), kThreads, 0, stream_}, static_cast<const int8_t*>(codes.data_ptr()),
      static_cast<const float*>(x_scale.data_ptr()), static_cast<const int32_t*>(x_zp.data_ptr()),
      static_cast<const uint8_t*>(w_packed.data_ptr()), static_cast<const float*>(w_scale.data_ptr()),
      static_cast<float*>(out.data_ptr()), n_tokens, m_out, k_in, group);
}

}  // namespace qtune::gpu
