// QAT fake quantization, one group at a time: the intx and int4 weight-only groups through the vectorized
// loops of cpu/fake_quant_loops.h, the q4_0/q8_0 groups and every f64 group through the scalar
// reference (engine/numerics/intx_quant.h).
#include <algorithm>
#include <cfenv>

#include "cpu/cpu_backend.h"
#include "cpu/fake_quant_loops.h"
#include "cpu/kernel_util.h"
#include "engine/numerics/intx_quant.h"

namespace qtune::cpu {

void CpuBackend::fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                               const Tensor& mask) {
  const int64_t group = check_fake_quantize_args(x, spec, out, mask);
  const int64_t groups = x.numel() / group;
  QTUNE_CHECK(std::fegetround() == FE_TONEAREST,
              "fake_quantize: the floating-point rounding mode was changed from round-to-nearest (fesetround); "
              "QAT rounds half to even only under the default mode");
  dispatch_float(x.dtype(), "fake_quantize", [&](auto tag) {
    using T = decltype(tag);
    const T* src = ptr<T>(x);
    T* dst = ptr<T>(out);
    uint8_t* m = ptr<uint8_t>(mask);
    auto one_group = [&](int64_t g) {
      if constexpr (!std::is_same_v<T, double>)
        if (fake_quantize_group_vectorized(src + g * group, group, spec, dst + g * group, m + g * group)) return;
      numerics::fake_quantize_group(src + g * group, group, spec, dst + g * group, m + g * group);
    };
    parallel_for(groups, std::max<int64_t>(1, 8192 / group), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) one_group(g);
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
  check_quantize_per_token_args(x, spec, codes, scale, zero_point);
  const int64_t rows = x.size(0), cols = x.size(1);
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
