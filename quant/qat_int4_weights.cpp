#include "quant/qat_int4_weights.h"

#include <string>

#include "engine/check.h"
#include "engine/numerics/element.h"

namespace qtune::quant {

using numerics::FakeQuantKind;

PackedInt4 pack_int4(const Tensor& w, const numerics::FakeQuantSpec& spec) {
  QTUNE_CHECK(w.dim() == 2 && w.device().is_cpu(), "pack_int4: weight ", shape_str(w.shape()),
              " must be a 2-D CPU tensor");
  const bool weight_only = spec.kind == FakeQuantKind::int4_weight_only;
  QTUNE_CHECK(weight_only || (spec.kind == FakeQuantKind::intx_symmetric && spec.qmin == -8 && spec.qmax == 7),
              "pack_int4: the scheme has no int4 codes");
  const int64_t rows = w.size(0), cols = w.size(1), group = spec.group_size;
  QTUNE_CHECK(group > 0 && group % 2 == 0 && cols % group == 0, "pack_int4: group size ", group,
              " must be even and divide ", cols);
  const int64_t groups = cols / group;
  PackedInt4 p;
  p.dtype = w.dtype();
  p.codes = Tensor::empty({rows, cols / 2}, DType::u8);
  p.scales = Tensor::empty({rows, groups}, DType::f32);
  if (weight_only) p.zeros = Tensor::empty({rows, groups}, DType::f32);
  const Tensor src = w.detach().contiguous();
  numerics::dispatch_float(w.dtype(), "pack_int4", [&](auto tag) {
    using T = decltype(tag);
    using A = numerics::acc_t<T>;
    const T* x = static_cast<const T*>(src.data_ptr());
    uint8_t* codes = p.codes.data<uint8_t>();
    float* scales = p.scales.data<float>();
    std::vector<int32_t> q(static_cast<size_t>(group));
    for (int64_t g = 0; g < rows * groups; ++g) {
      const T* xg = x + g * group;
      if (weight_only) {
        const auto e = numerics::group_extremes(xg, group);
        const numerics::Int4WoParams<A> wo = numerics::int4wo_params(e.min, e.max);
        scales[g] = static_cast<float>(wo.scale);
        p.zeros.data<float>()[g] = static_cast<float>(wo.zero);
        for (int64_t i = 0; i < group; ++i) q[i] = numerics::int4wo_code(numerics::load(xg + i), wo);
      } else {
        const numerics::QParams<A> s = numerics::intx_group_qparams(xg, group, spec);
        scales[g] = static_cast<float>(s.scale);
        for (int64_t i = 0; i < group; ++i) q[i] = numerics::intx_code(numerics::load(xg + i), s.scale, 0, -8, 7) + 8;
      }
      for (int64_t i = 0; i < group; i += 2) codes[(g * group + i) / 2] = numerics::pack_nibbles(q[i], q[i + 1]);
    }
  });
  return p;
}

void dequantize_int4_rows(const PackedInt4& packed, const int64_t* rows, int64_t n, const Tensor& out) {
  const int64_t cols = packed.codes.size(1) * 2, groups = packed.scales.size(1), group = cols / groups;
  QTUNE_CHECK(out.shape() == Shape({n, cols}) && out.dtype() == packed.dtype && out.is_contiguous(),
              "dequantize_int4_rows: out ", shape_str(out.shape()), " must be contiguous ", dtype_name(packed.dtype),
              " [", n, ", ", cols, "]");
  const uint8_t* codes = packed.codes.data<uint8_t>();
  const float* scales = packed.scales.data<float>();
  const float* zeros = packed.zeros.defined() ? packed.zeros.data<float>() : nullptr;
  numerics::dispatch_float(packed.dtype, "dequantize_int4_rows", [&](auto tag) {
    using T = decltype(tag);
    T* y = static_cast<T*>(out.data_ptr());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = rows[i];
      for (int64_t c = 0; c < cols; ++c) {
        const uint8_t b = codes[(r * cols + c) / 2];
        const int32_t code = c % 2 == 0 ? numerics::low_nibble(b) : numerics::high_nibble(b);
        const int64_t g = r * groups + c / group;
        // The same f32 formulas the fake quantizers use (f32 scales; f64 weights are stored through f32).
        const float v = zeros ? numerics::int4wo_dequant(code, numerics::Int4WoParams<float>{0.0f, scales[g], zeros[g]})
                              : numerics::intx_dequant(code - 8, scales[g], 0);
        numerics::store(y + i * cols + c, v);
      }
    }
  });
}

void check_packed_int4(const PackedInt4& packed, int64_t group, bool with_zeros, const char* who) {
  QTUNE_CHECK(packed.codes.defined() && packed.codes.dim() == 2 && packed.codes.dtype() == DType::u8, who,
              ": the int4 codes must be a [rows, cols/2] u8 tensor");
  const int64_t rows = packed.codes.size(0), cols = packed.codes.size(1) * 2;
  QTUNE_CHECK(group > 0 && group % 2 == 0 && cols % group == 0, who, ": group size ", group,
              " must be even and divide the ", cols, " columns");
  const Shape want{rows, cols / group};
  const auto check_scales = [&](const Tensor& t, const char* what) {
    QTUNE_CHECK(t.defined() && t.dtype() == DType::f32 && t.shape() == want, who, ": ", what, " must be f32 ",
                shape_str(want), " (one per group of ", group, "), got ",
                t.defined() ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()) : "none");
  };
  check_scales(packed.scales, "scales");
  if (with_zeros) check_scales(packed.zeros, "zeros");
  QTUNE_CHECK(with_zeros || !packed.zeros.defined(), who, ": this scheme has no zeros");
  QTUNE_CHECK(packed.codes.device().is_cpu() && packed.scales.device().is_cpu(), who, ": packed weights live on CPU");
}

}  // namespace qtune::quant
