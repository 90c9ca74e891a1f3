#include "quant/float8_scaling.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/numerics/fp8.h"
#include "ops/elementwise.h"

namespace qtune::quant {

double fp8_max(Fp8Format format) { return format == Fp8Format::e4m3 ? numerics::E4M3::max : numerics::E5M2::max; }

DType fp8_dtype(Fp8Format format) { return format == Fp8Format::e4m3 ? DType::f8_e4m3 : DType::f8_e5m2; }

Fp8Tensor quantize_fp8(const Tensor& x, Fp8Cast cast, bool pow2_scales) {
  QTUNE_CHECK(x.dim() == 2, "quantize_fp8: operand must be [rows, cols], got ", shape_str(x.shape()));
  NoGradGuard no_grad;
  const Tensor src = x.detach().contiguous();
  const int64_t rows = src.size(0), cols = src.size(1);
  const Shape scale_shape = cast.group == ScaleGroup::row      ? Shape{rows, 1}
                            : cast.group == ScaleGroup::column ? Shape{1, cols}
                                                               : Shape{1, 1};
  Fp8Tensor q{Tensor::empty(src.shape(), fp8_dtype(cast.format), src.device()),
              Tensor::empty(scale_shape, DType::f32, src.device())};
  Backend& backend = backend_for(src.device());
  backend.fp8_scale(src, fp8_max(cast.format), pow2_scales, q.scale);
  backend.fp8_quantize(src, q.scale, q.codes);
  return q;
}

Tensor fp8_matmul(const Fp8Tensor& a, const Fp8Tensor& b, DType out_dtype) {
  const bool direct = out_dtype == DType::f32 || out_dtype == DType::bf16 || out_dtype == DType::f16;
  const Tensor out =
      Tensor::empty({a.codes.size(0), b.codes.size(0)}, direct ? out_dtype : DType::f32, a.codes.device());
  backend_for(out.device()).fp8_gemm(a.codes, a.scale, b.codes, b.scale, out);
  return direct ? out : out.to(out_dtype);
}

Fp8Tensor transpose_tensorwise(const Fp8Tensor& q) {
  QTUNE_CHECK(q.scale.numel() == 1, "transpose_tensorwise: the scale must be one per tensor, got ",
              shape_str(q.scale.shape()));
  return {q.codes.transpose(0, 1).contiguous(), q.scale};
}

Tensor dequantize_fp8(const Fp8Tensor& q) {
  NoGradGuard no_grad;
  return ops::div(q.codes.to(DType::f32), q.scale);
}

}  // namespace qtune::quant
