#include "engine/backend.h"

#include "engine/check.h"
#include "engine/numerics/nf4.h"

namespace qtune {

void Backend::unsupported(std::string_view kernel) const {
  QTUNE_FAIL("kernel '", kernel, "' is not implemented by the ", name(), " backend");
}

void Backend::copy(const Tensor&, const Tensor&) { unsupported("copy"); }
void Backend::copy_from_host(const void*, const Tensor&) { unsupported("copy_from_host"); }
void Backend::copy_to_host(const Tensor&, void*) { unsupported("copy_to_host"); }
void Backend::fill(const Tensor&, double) { unsupported("fill"); }
void Backend::unary(UnaryOp, const Tensor&, const Tensor&) { unsupported("unary"); }
void Backend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) { unsupported("binary"); }
void Backend::affine(const Tensor&, double, double, const Tensor&) { unsupported("affine"); }
void Backend::pow_scalar(const Tensor&, double, const Tensor&) { unsupported("pow_scalar"); }
void Backend::reduce(ReduceOp, const Tensor&, const Tensor&) { unsupported("reduce"); }
void Backend::gemm(const Tensor&, bool, const Tensor&, bool, const Tensor&, double, double) { unsupported("gemm"); }
void Backend::embedding(const Tensor&, const Tensor&, const Tensor&) { unsupported("embedding"); }
void Backend::embedding_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("embedding_backward"); }
void Backend::swiglu(const Tensor&, const Tensor&, const Tensor&) { unsupported("swiglu"); }
void Backend::swiglu_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("swiglu_backward");
}
void Backend::rmsnorm(const Tensor&, const Tensor&, double, const Tensor&, const Tensor&) { unsupported("rmsnorm"); }
void Backend::rmsnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&) {
  unsupported("rmsnorm_backward");
}
void Backend::rope(const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&) { unsupported("rope"); }
void Backend::attention(const Tensor&, const Tensor&, const Tensor&, double, bool, const Tensor&, const Tensor&) {
  unsupported("attention");
}
void Backend::attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, double, bool, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("attention_backward");
}
void Backend::softmax(const Tensor&, const Tensor&) { unsupported("softmax"); }
void Backend::softmax_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("softmax_backward"); }
void Backend::log_softmax(const Tensor&, const Tensor&) { unsupported("log_softmax"); }
void Backend::log_softmax_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("log_softmax_backward"); }
void Backend::cross_entropy(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&) {
  unsupported("cross_entropy");
}
void Backend::cross_entropy_backward(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&,
                                     const Tensor&) {
  unsupported("cross_entropy_backward");
}
void Backend::adamw_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, double, double, double,
                         double, int64_t) {
  unsupported("adamw_step");
}
void Backend::sgd_step(const Tensor&, const Tensor&, const Tensor&, double, double, double, bool, double, bool) {
  unsupported("sgd_step");
}
void Backend::squared_norm(const Tensor&, const Tensor&) { unsupported("squared_norm"); }
void Backend::fill_uniform(const Tensor&, uint64_t, uint64_t, double, double) { unsupported("fill_uniform"); }
void Backend::fill_normal(const Tensor&, uint64_t, uint64_t, double, double) { unsupported("fill_normal"); }
void Backend::dropout(const Tensor&, double, uint64_t, uint64_t, const Tensor&) { unsupported("dropout"); }
// NF4
void Backend::check_nf4_parts(std::string_view kernel, int64_t numel, const Tensor& codes, const Tensor& scalers,
                              const Tensor& factors, const Tensor& mean) const {
  const int64_t blocks = (numel + numerics::kNF4BlockSize - 1) / numerics::kNF4BlockSize;
  const int64_t scaler_blocks = (blocks + numerics::kNF4ScalerBlockSize - 1) / numerics::kNF4ScalerBlockSize;
  auto check = [&](const Tensor& t, const char* what, DType dtype, int64_t n) {
    QTUNE_CHECK(t.defined() && t.dtype() == dtype && t.numel() == n && t.is_contiguous() && t.device() == device(),
                kernel, ": ", what, " must be ", n, " contiguous ", dtype_name(dtype), " elements on ", device().str(),
                " for a weight of ", numel, " elements, got ",
                t.defined()
                    ? shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())) + " on " + t.device().str()
                    : std::string("undefined"));
  };
  QTUNE_CHECK(factors.defined() && (factors.dtype() == DType::f32 || factors.dtype() == DType::bf16), kernel,
              ": NF4 factors must be f32 or bf16 (the quantized weight's dtype)");
  check(codes, "codes", DType::u8, blocks * numerics::kNF4BlockSize / 2);
  check(scalers, "scalers", DType::i8, blocks);
  check(factors, "factors", factors.dtype(), scaler_blocks);
  check(mean, "mean", factors.dtype(), 1);
}

void Backend::nf4_quantize(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("nf4_quantize");
}
void Backend::nf4_dequantize(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&) {
  unsupported("nf4_dequantize");
}

void Backend::check_update_args(std::string_view kernel, const Tensor& param, const Tensor& grad,
                                std::initializer_list<const Tensor*> state) const {
  const DType dt = param.dtype();
  QTUNE_CHECK(dt == DType::f32 || dt == DType::bf16 || dt == DType::f16, kernel, ": parameter dtype ", dtype_name(dt),
              " is not supported (expected f32, bf16 or f16)");
  QTUNE_CHECK(grad.dtype() == dt && grad.shape() == param.shape(), kernel, ": gradient ", dtype_name(grad.dtype()), " ",
              shape_str(grad.shape()), " does not match the parameter ", dtype_name(dt), " ", shape_str(param.shape()));
  auto check_tensor = [&](const Tensor& t, const char* what) {
    QTUNE_CHECK(t.device() == device(), kernel, ": ", what, " is on ", t.device().str(), ", expected ", device().str());
    QTUNE_CHECK(t.is_contiguous(), kernel, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
  };
  check_tensor(param, "parameter");
  check_tensor(grad, "gradient");
  for (const Tensor* s : state) {
    if (!s->defined()) continue;
    QTUNE_CHECK(s->dtype() == DType::f32 && s->shape() == param.shape(), kernel, ": optimizer state ",
                dtype_name(s->dtype()), " ", shape_str(s->shape()), " does not match the parameter (expected f32 ",
                shape_str(param.shape()), ")");
    check_tensor(*s, "optimizer state");
  }
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return detail::cpu_backend();
  Backend* cuda = detail::cuda_backend(device.index);
  QTUNE_CHECK(cuda != nullptr, "device ", device.str(),
              " was asked for, but this qtune build has no CUDA backend (configure with -DQTUNE_CUDA=ON)");
  return *cuda;
}

}  // namespace qtune
