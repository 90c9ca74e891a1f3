// QAT fake quantization: one group at a time through the scalar reference (engine/numerics/intx_quant.h).
#include <algorithm>

#include "engine/numerics/intx_quant.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cpu/kernel_util.h"

namespace qtune::cpu {

void CpuBackend::fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                               const Tensor& mask) {
  const int64_t group = check_fake_quantize_args(x, spec, out, mask);
  const int64_t groups = x.numel() / group;
  dispatch_float(x.dtype(), "fake_quantize", [&](auto tag) {
    using T = decltype(tag);
    const T* src = ptr<T>(x);
    T* dst = ptr<T>(out);
    uint8_t* m = ptr<uint8_t>(mask);
    parallel_for(groups, std::max<int64_t>(1, 8192 / group), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g)
        numerics::fake_quantize_group(src + g * group, group, spec, dst + g * group, m + g * group);
    });
  });
}

void CpuBackend::fake_quantize_backward(const Tensor& grad_out, const Tensor& mask, const Tensor& grad_x) {
  check_fake_quantize_backward_args(grad_out, mask, grad_x);
  dispatch_float(grad_out.dtype(), "fake_quantize_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = ptr<T>(grad_out);
    const uint8_t* m = ptr<uint8_t>(mask);
    T* gx = ptr<T>(grad_x);
    parallel_for(grad_out.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) store(gx + i, m[i] ? load(g + i) : acc_t<T>(0));
    });
  });
}

void CpuBackend::quantize_per_token(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                                    const Tensor& scale, const Tensor& zero_point) {
  QTUNE_CHECK(x.dim() == 2 && x.is_contiguous(), "quantize_per_token: x ", shape_str(x.shape()),
              " must be a contiguous [N, K]");
  QTUNE_CHECK(
      spec.kind == numerics::FakeQuantKind::intx_symmetric || spec.kind == numerics::FakeQuantKind::intx_asymmetric,
      "quantize_per_token: only the intx schemes have integer codes");
  QTUNE_CHECK(spec.qmin >= -128 && spec.qmax <= 127, "quantize_per_token: codes [", spec.qmin, ", ", spec.qmax,
              "] do not fit int8");
  const int64_t rows = x.size(0), cols = x.size(1);
  QTUNE_CHECK(codes.shape() == x.shape() && codes.dtype() == DType::i8 && codes.is_contiguous(),
              "quantize_per_token: codes ", dtype_name(codes.dtype()), " ", shape_str(codes.shape()),
              " must be contiguous i8 ", shape_str(x.shape()));
  QTUNE_CHECK(scale.shape() == Shape({rows}) && scale.dtype() == DType::f32 && zero_point.shape() == Shape({rows}) &&
                  zero_point.dtype() == DType::i32,
              "quantize_per_token: scale ", shape_str(scale.shape()), " must be f32 [", rows, "] and zero_point ",
              shape_str(zero_point.shape()), " i32 [", rows, "]");
  dispatch_float(x.dtype(), "quantize_per_token", [&](auto tag) {
    using T = decltype(tag);
    const T* src = ptr<T>(x);
    int8_t* q = ptr<int8_t>(codes);
    float* s = ptr<float>(scale);
    int32_t* zp = ptr<int32_t>(zero_point);
    parallel_for(rows, std::max<int64_t>(1, 8192 / cols), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = src + r * cols;
        const auto p = numerics::intx_group_qparams(row, cols, spec);
        s[r] = static_cast<float>(p.scale);
        zp[r] = p.zero_point;
        for (int64_t k = 0; k < cols; ++k)
          q[r * cols + k] =
              static_cast<int8_t>(numerics::intx_code(load(row + k), p.scale, p.zero_point, spec.qmin, spec.qmax));
      }
    });
  });
}

}  // namespace qtune::cpu
