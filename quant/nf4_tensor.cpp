#include "quant/nf4_tensor.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::quant {
namespace {

int64_t blocks_for(int64_t numel) { return (numel + NF4Tensor::kBlockSize - 1) / NF4Tensor::kBlockSize; }
int64_t scaler_blocks_for(int64_t blocks) {
  return (blocks + NF4Tensor::kScalerBlockSize - 1) / NF4Tensor::kScalerBlockSize;
}

}  // namespace

NF4Tensor NF4Tensor::quantize(const Tensor& weight) {
  QTUNE_CHECK(weight.defined() && weight.numel() > 0, "NF4Tensor::quantize: the weight is undefined or empty");
  QTUNE_CHECK(weight.dtype() == DType::f32 || weight.dtype() == DType::bf16, "NF4Tensor::quantize: weight ",
              shape_str(weight.shape()), " is ", dtype_name(weight.dtype()),
              "; NF4 quantizes f32 or bf16 (cast first)");
  NoGradGuard no_grad;
  const Tensor flat = weight.detach().contiguous().reshape({-1});
  const int64_t blocks = blocks_for(flat.numel());
  const Device d = weight.device();
  NF4Tensor t;
  t.shape_ = weight.shape();
  t.codes_ = Tensor::empty({blocks * kBlockSize / 2}, DType::u8, d);
  t.scalers_ = Tensor::empty({blocks}, DType::i8, d);
  t.factors_ = Tensor::empty({scaler_blocks_for(blocks)}, weight.dtype(), d);
  t.mean_ = Tensor::empty({1}, weight.dtype(), d);
  backend_for(d).nf4_quantize(flat, t.codes_, t.scalers_, t.factors_, t.mean_);
  return t;
}

NF4Tensor NF4Tensor::reserved(const Shape& shape, DType dtype, Device device) {
  QTUNE_CHECK(numel_of(shape) > 0 && (dtype == DType::f32 || dtype == DType::bf16), "NF4Tensor::reserved: a ",
              dtype_name(dtype), " ", shape_str(shape), " weight cannot be NF4 (non-empty f32 or bf16)");
  const int64_t blocks = blocks_for(numel_of(shape));
  NF4Tensor t;
  t.shape_ = shape;
  t.codes_ = Tensor::reserved({blocks * kBlockSize / 2}, DType::u8, device);
  t.scalers_ = Tensor::reserved({blocks}, DType::i8, device);
  t.factors_ = Tensor::reserved({scaler_blocks_for(blocks)}, dtype, device);
  t.mean_ = Tensor::reserved({1}, dtype, device);
  return t;
}

NF4Tensor NF4Tensor::from_parts(const Shape& shape, Tensor codes, Tensor scalers, Tensor factors, Tensor mean) {
  const int64_t numel = numel_of(shape);
  QTUNE_CHECK(numel > 0, "NF4Tensor::from_parts: shape ", shape_str(shape), " is empty");
  for (const Tensor* part : {&codes, &scalers, &factors, &mean})
    QTUNE_CHECK(part->defined() && part->device() == codes.device(),
                "NF4Tensor::from_parts: every part must be defined and on one device");
  NF4Tensor t;
  t.shape_ = shape;
  t.codes_ = codes.contiguous();
  t.scalers_ = scalers.contiguous();
  t.factors_ = factors.contiguous();
  t.mean_ = mean.contiguous().reshape({-1});
  QTUNE_CHECK(t.scalers_.numel() == blocks_for(numel), "NF4Tensor::from_parts: ", t.scalers_.numel(),
              " scalers do not fit shape ", shape_str(shape), " (expected ", blocks_for(numel), ")");
  // The backend's own checks name each other part's expected size and dtype (an empty range reads nothing).
  backend_for(t.device())
      .nf4_dequantize(t.codes_, t.scalers_, t.factors_, t.mean_, 0, Tensor::empty({0}, DType::f32, t.device()));
  return t;
}

void NF4Tensor::dequantize_range(int64_t first, const Tensor& out) const {
  QTUNE_CHECK(defined(), "NF4Tensor::dequantize_range: undefined tensor");
  QTUNE_CHECK(first >= 0 && first + out.numel() <= numel(), "NF4Tensor::dequantize_range: elements [", first, ", ",
              first + out.numel(), ") lie outside shape ", shape_str(shape_));
  backend_for(device()).nf4_dequantize(codes_, scalers_, factors_, mean_, first, out);
}

Tensor NF4Tensor::dequantize(DType dtype) const {
  Tensor out = Tensor::empty(shape_, dtype, device());
  dequantize_range(0, out);
  return out;
}

NF4Tensor NF4Tensor::to(Device device) const {
  NF4Tensor t;
  t.shape_ = shape_;
  t.codes_ = codes_.to(device);
  t.scalers_ = scalers_.to(device);
  t.factors_ = factors_.to(device);
  t.mean_ = mean_.to(device);
  return t;
}

size_t NF4Tensor::nbytes() const { return codes_.nbytes() + scalers_.nbytes() + factors_.nbytes() + mean_.nbytes(); }

std::vector<std::pair<std::string, Tensor>> NF4Tensor::parts() const {
  return {{"codes", codes_}, {"scalers", scalers_}, {"factors", factors_}, {"mean", mean_}};
}

}  // namespace qtune::quant
