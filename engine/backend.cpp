#include "engine/backend.h"

#include <algorithm>
#include <vector>

#include "engine/check.h"
#include "engine/numerics/clip.h"
#include "engine/numerics/nf4.h"

namespace qtune {

void Backend::unsupported(std::string_view kernel) const {
  QTUNE_FAIL("kernel '", kernel, "' is not implemented by the ", name(), " backend");
}

std::string Backend::new_collectives_id() { unsupported("new_collectives_id (collectives between devices)"); }
std::unique_ptr<DeviceCollectives> Backend::join_collectives(const std::string&, int, int) {
  unsupported("join_collectives (collectives between devices)");
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
std::string Backend::gemm_path(DType) { return std::string(name()) + " backend's own GEMM"; }
bool Backend::gemm_native(DType) { return true; }
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
void Backend::adamw_step_master(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& exp_avg,
                                const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps,
                                double weight_decay, int64_t step) {
  check_master_update_args(param, master, grad, exp_avg, exp_avg_sq);
  const Tensor wide = Tensor::empty(grad.shape(), DType::f32, grad.device());
  copy(grad, wide);
  adamw_step(master, wide, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step);
  copy(master, param);
}
void Backend::sgd_step(const Tensor&, const Tensor&, const Tensor&, double, double, double, bool, double, bool) {
  unsupported("sgd_step");
}
void Backend::set_tf32(bool enabled) {
  QTUNE_CHECK(!enabled, "TF32 GEMMs are not available on ", name(), " (they run on NVIDIA tensor cores: device=cuda)");
}
void Backend::squared_norm(const Tensor&, const Tensor&) { unsupported("squared_norm"); }
void Backend::squared_norm_blocks(const Tensor& x, const Tensor& out) {
  const int64_t n = x.numel();
  const int64_t blocks = (n + numerics::kSquaredNormBlock - 1) / numerics::kSquaredNormBlock;
  QTUNE_CHECK(out.dtype() == DType::f64 && out.numel() == blocks && out.is_contiguous(),
              "squared_norm_blocks: out must be ", blocks, " f64 elements for ", n, " elements of x, got ",
              dtype_name(out.dtype()), " ", shape_str(out.shape()));
  const Tensor flat = x.reshape({n});
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t begin = k * numerics::kSquaredNormBlock;
    squared_norm(flat.narrow(0, begin, std::min(numerics::kSquaredNormBlock, n - begin)), out.narrow(0, k, 1));
  }
}
void Backend::clip_by_norm(const Tensor&, double, const Tensor&) { unsupported("clip_by_norm"); }
// Float8
void Backend::fp8_scale(const Tensor&, double, bool, const Tensor&) { unsupported("fp8_scale"); }
void Backend::fp8_quantize(const Tensor&, const Tensor&, const Tensor&) { unsupported("fp8_quantize"); }
void Backend::fp8_gemm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("fp8_gemm");
}
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
void Backend::nf4_encode(const Tensor&, const Tensor&, const Tensor&) { unsupported("nf4_encode"); }
void Backend::nf4_double_quantize(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("nf4_double_quantize");
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

void Backend::check_master_update_args(const Tensor& param, const Tensor& master, const Tensor& grad,
                                       const Tensor& exp_avg, const Tensor& exp_avg_sq) const {
  check_update_args("adamw_step_master", param, grad, {&master, &exp_avg, &exp_avg_sq});
  QTUNE_CHECK(param.dtype() != DType::f32 && master.defined() && exp_avg.defined() && exp_avg_sq.defined(),
              "adamw_step_master: needs a bf16 or f16 param (got ", dtype_name(param.dtype()),
              ") and its f32 master, exp_avg and exp_avg_sq");
}

void Backend::check_on_device(std::string_view kernel, std::initializer_list<const Tensor*> tensors) const {
  for (const Tensor* t : tensors)
    QTUNE_CHECK(!t->defined() || t->device() == device(), kernel, ": a ", shape_str(t->shape()), " tensor is on ",
                t->device().str(), ", expected ", device().str());
}

void Backend::check_like(std::string_view kernel, const Tensor& ref, const char* ref_name, const Tensor& t,
                         const char* what) const {
  QTUNE_CHECK(t.shape() == ref.shape() && t.dtype() == ref.dtype(), kernel, ": ", what, " ", shape_str(t.shape()), " (",
              dtype_name(t.dtype()), ") must match ", ref_name, " ", shape_str(ref.shape()), " (",
              dtype_name(ref.dtype()), ")");
  QTUNE_CHECK(t.is_contiguous(), kernel, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
  QTUNE_CHECK(t.device() == device(), kernel, ": ", what, " is on ", t.device().str(), ", expected ", device().str());
}

void Backend::check_row_pair(std::string_view kernel, const Tensor& a, const char* a_name, const Tensor& b,
                             const char* b_name) const {
  QTUNE_CHECK(a.dim() == 2, kernel, ": ", a_name, " must be [N, C], got ", shape_str(a.shape()));
  QTUNE_CHECK(a.shape() == b.shape(), kernel, ": ", a_name, " ", shape_str(a.shape()), " and ", b_name, " ",
              shape_str(b.shape()), " differ");
  QTUNE_CHECK(a.dtype() == b.dtype(), kernel, ": ", a_name, " dtype ", dtype_name(a.dtype()), " and ", b_name,
              " dtype ", dtype_name(b.dtype()), " differ");
  for (auto [t, name] : {std::pair{&a, a_name}, {&b, b_name}}) {
    QTUNE_CHECK(t->is_contiguous(), kernel, ": ", name, " must be contiguous (shape ", shape_str(t->shape()), ")");
    QTUNE_CHECK(t->device() == device(), kernel, ": ", name, " is on ", t->device().str(), ", expected ",
                device().str());
  }
}

// Float8
void Backend::check_fp8_args(std::string_view kernel, const Tensor& x, const Tensor& scale, const Tensor& codes) const {
  const DType dt = x.dtype();
  QTUNE_CHECK(dt == DType::f64 || dt == DType::f32 || dt == DType::bf16 || dt == DType::f16, kernel, ": input dtype ",
              dtype_name(dt), " is not supported (expected f64, f32, bf16 or f16)");
  QTUNE_CHECK(x.dim() == 2, kernel, ": input must be [rows, cols], got ", shape_str(x.shape()));
  const int64_t rows = x.size(0), cols = x.size(1);
  QTUNE_CHECK(scale.dtype() == DType::f32 && scale.dim() == 2 && (scale.size(0) == rows || scale.size(0) == 1) &&
                  (scale.size(1) == cols || scale.size(1) == 1) && (scale.size(0) == 1 || scale.size(1) == 1),
              kernel, ": scale ", dtype_name(scale.dtype()), " ", shape_str(scale.shape()), " does not fit input ",
              shape_str(x.shape()), " (expected f32 [", rows, ", 1], [1, ", cols, "] or [1, 1])");
  std::vector<const Tensor*> all{&x, &scale};
  if (codes.defined()) {
    QTUNE_CHECK((codes.dtype() == DType::f8_e4m3 || codes.dtype() == DType::f8_e5m2) && codes.shape() == x.shape(),
                kernel, ": codes ", dtype_name(codes.dtype()), " ", shape_str(codes.shape()),
                " must be f8_e4m3 or f8_e5m2 of the input's shape ", shape_str(x.shape()));
    all.push_back(&codes);
  }
  for (const Tensor* t : all) {
    QTUNE_CHECK(t->device() == device(), kernel, ": operand is on ", t->device().str(), ", expected ", device().str());
    QTUNE_CHECK(t->is_contiguous(), kernel, ": operand ", shape_str(t->shape()), " must be contiguous");
  }
}

// QAT
void Backend::fake_quantize(const Tensor&, const numerics::FakeQuantSpec&, const Tensor&, const Tensor&) {
  unsupported("fake_quantize");
}
void Backend::fake_quantize_backward(const Tensor&, const Tensor&, const Tensor&) {
  unsupported("fake_quantize_backward");
}

void Backend::quantize_per_token(const Tensor&, const numerics::FakeQuantSpec&, const Tensor&, const Tensor&,
                                 const Tensor&) {
  unsupported("quantize_per_token");
}
void Backend::int8_int4_linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&) {
  unsupported("int8_int4_linear");
}

int64_t Backend::check_fake_quantize_args(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                                          const Tensor& mask) const {
  QTUNE_CHECK(x.dim() == 2, "fake_quantize: x ", shape_str(x.shape()), " must be [N, C]");
  const int64_t cols = x.size(1);
  const int64_t group = spec.group_size == 0 ? cols : spec.group_size;
  QTUNE_CHECK(group > 0 && cols % group == 0, "fake_quantize: group size ", group, " must divide the last dim ", cols,
              " of ", shape_str(x.shape()));
  QTUNE_CHECK((spec.kind != numerics::FakeQuantKind::q4_0 && spec.kind != numerics::FakeQuantKind::q8_0) ||
                  group % numerics::kGgmlBlock == 0,
              "fake_quantize: q4_0 / q8_0 work on blocks of ", numerics::kGgmlBlock, ", which group size ", group,
              " is not a multiple of");
  QTUNE_CHECK(out.shape() == x.shape() && out.dtype() == x.dtype(), "fake_quantize: out ", dtype_name(out.dtype()), " ",
              shape_str(out.shape()), " must match x ", dtype_name(x.dtype()), " ", shape_str(x.shape()));
  QTUNE_CHECK(mask.shape() == x.shape() && mask.dtype() == DType::u8, "fake_quantize: mask ", dtype_name(mask.dtype()),
              " ", shape_str(mask.shape()), " must be u8 ", shape_str(x.shape()));
  for (const Tensor* t : {&x, &out, &mask}) {
    QTUNE_CHECK(t->device() == device(), "fake_quantize: a tensor is on ", t->device().str(), ", expected ",
                device().str());
    QTUNE_CHECK(t->is_contiguous(), "fake_quantize: tensors must be contiguous (shape ", shape_str(t->shape()), ")");
  }
  return group;
}

void Backend::check_quantize_per_token_args(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                                            const Tensor& scale, const Tensor& zero_point) const {
  QTUNE_CHECK(x.dim() == 2 && x.is_contiguous(), "quantize_per_token: x ", shape_str(x.shape()),
              " must be a contiguous [N, K]");
  QTUNE_CHECK(
      spec.kind == numerics::FakeQuantKind::intx_symmetric || spec.kind == numerics::FakeQuantKind::intx_asymmetric,
      "quantize_per_token: only the intx schemes have integer codes");
  QTUNE_CHECK(spec.qmin >= -128 && spec.qmax <= 127, "quantize_per_token: codes [", spec.qmin, ", ", spec.qmax,
              "] do not fit int8");
  const int64_t rows = x.size(0);
  QTUNE_CHECK(codes.shape() == x.shape() && codes.dtype() == DType::i8 && codes.is_contiguous(),
              "quantize_per_token: codes ", dtype_name(codes.dtype()), " ", shape_str(codes.shape()),
              " must be contiguous i8 ", shape_str(x.shape()));
  QTUNE_CHECK(scale.shape() == Shape({rows}) && scale.dtype() == DType::f32 && zero_point.shape() == Shape({rows}) &&
                  zero_point.dtype() == DType::i32,
              "quantize_per_token: scale ", shape_str(scale.shape()), " must be f32 [", rows, "] and zero_point ",
              shape_str(zero_point.shape()), " i32 [", rows, "]");
  for (const Tensor* t : {&x, &codes, &scale, &zero_point})
    QTUNE_CHECK(t->device() == device() && t->is_contiguous(),
                "quantize_per_token: every tensor must be contiguous on ", device().str(), " (one is ",
                shape_str(t->shape()), " on ", t->device().str(), ")");
}

int64_t Backend::check_int8_int4_linear_args(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp,
                                             const Tensor& w_packed, const Tensor& w_scale, const Tensor& out) const {
  QTUNE_CHECK(codes.dim() == 2 && codes.dtype() == DType::i8, "int8_int4_linear: codes ", shape_str(codes.shape()),
              " must be i8 [N, K]");
  const int64_t n_tokens = codes.size(0), k_in = codes.size(1);
  QTUNE_CHECK(w_packed.dim() == 2 && w_packed.dtype() == DType::u8 && w_packed.size(1) * 2 == k_in,
              "int8_int4_linear: packed weight ", shape_str(w_packed.shape()), " must be u8 [M, K/2] with K = ", k_in);
  const int64_t m_out = w_packed.size(0);
  QTUNE_CHECK(w_scale.dim() == 2 && w_scale.dtype() == DType::f32 && w_scale.size(0) == m_out && w_scale.size(1) > 0 &&
                  k_in % w_scale.size(1) == 0,
              "int8_int4_linear: weight scales ", shape_str(w_scale.shape()), " must be f32 [M, K/G] with M = ", m_out,
              " and G dividing K = ", k_in);
  QTUNE_CHECK(x_scale.shape() == Shape({n_tokens}) && x_scale.dtype() == DType::f32 &&
                  x_zp.shape() == Shape({n_tokens}) && x_zp.dtype() == DType::i32,
              "int8_int4_linear: activation scale/zero point must be f32/i32 [", n_tokens, "]");
  QTUNE_CHECK(out.shape() == Shape({n_tokens, m_out}) && out.dtype() == DType::f32, "int8_int4_linear: out ",
              shape_str(out.shape()), " must be f32 [", n_tokens, ", ", m_out, "]");
  for (const Tensor* t : {&codes, &x_scale, &x_zp, &w_packed, &w_scale, &out})
    QTUNE_CHECK(t->device() == device() && t->is_contiguous(), "int8_int4_linear: every operand must be contiguous on ",
                device().str(), " (one is ", shape_str(t->shape()), " on ", t->device().str(), ")");
  return k_in / w_scale.size(1);
}

void Backend::check_fake_quantize_backward_args(const Tensor& grad_out, const Tensor& mask,
                                                const Tensor& grad_x) const {
  QTUNE_CHECK(mask.shape() == grad_out.shape() && mask.dtype() == DType::u8 && grad_x.shape() == grad_out.shape() &&
                  grad_x.dtype() == grad_out.dtype(),
              "fake_quantize_backward: grad_out ", dtype_name(grad_out.dtype()), " ", shape_str(grad_out.shape()),
              ", mask ", dtype_name(mask.dtype()), " ", shape_str(mask.shape()), " and grad_x ",
              dtype_name(grad_x.dtype()), " ", shape_str(grad_x.shape()), " must share a shape (mask u8)");
  for (const Tensor* t : {&grad_out, &mask, &grad_x}) {
    QTUNE_CHECK(t->device() == device(), "fake_quantize_backward: a tensor is on ", t->device().str(), ", expected ",
                device().str());
    QTUNE_CHECK(t->is_contiguous(), "fake_quantize_backward: tensors must be contiguous (shape ", shape_str(t->shape()),
                ")");
  }
}

}  // namespace qtune
