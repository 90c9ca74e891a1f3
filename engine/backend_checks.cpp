// The argument checks of the model kernels, made alike by every backend: the same input gets the same
// message on CPU and CUDA.
#include <tuple>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune {
namespace {

// The dtype of per-row statistics (rstd, lse, losses) for inputs of dtype `dt`.
DType stat_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace

void Backend::check_fp8_gemm_args(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                                  const Tensor& out) const {
  auto is_fp8 = [](const Tensor& t) { return t.dtype() == DType::f8_e4m3 || t.dtype() == DType::f8_e5m2; };
  QTUNE_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), "fp8_gemm: a ", shape_str(a.shape()), " and b ",
              shape_str(b.shape()), " must be [M, K] and [N, K]");
  QTUNE_CHECK(is_fp8(a) && is_fp8(b) && !(a.dtype() == DType::f8_e5m2 && b.dtype() == DType::f8_e5m2),
              "fp8_gemm: a and b must be f8_e4m3 or f8_e5m2, not both e5m2 (got ", dtype_name(a.dtype()), ", ",
              dtype_name(b.dtype()), ")");
  for (auto [scale, rows, name] : {std::tuple{&a_scale, a.size(0), "a_scale"}, {&b_scale, b.size(0), "b_scale"}})
    QTUNE_CHECK(scale->dtype() == DType::f32 && scale->dim() == 2 && scale->size(1) == 1 &&
                    (scale->size(0) == 1 || scale->size(0) == rows),
                "fp8_gemm: ", name, " must be f32 [1, 1] or [", rows, ", 1], got ", shape_str(scale->shape()), " ",
                dtype_name(scale->dtype()));
  QTUNE_CHECK(out.shape() == Shape({a.size(0), b.size(0)}), "fp8_gemm: out ", shape_str(out.shape()), " must be [",
              a.size(0), ", ", b.size(0), "]");
  QTUNE_CHECK(out.dtype() == DType::f32 || out.dtype() == DType::bf16 || out.dtype() == DType::f16,
              "fp8_gemm: out must be f32, bf16 or f16, got ", dtype_name(out.dtype()));
  for (auto [t, name] : {std::pair{&a, "a"}, {&b, "b"}, {&a_scale, "a_scale"}, {&b_scale, "b_scale"}, {&out, "out"}})
    QTUNE_CHECK(t->is_contiguous(), "fp8_gemm: ", name, " must be contiguous (shape ", shape_str(t->shape()), ")");
  check_on_device("fp8_gemm", {&a, &a_scale, &b, &b_scale, &out});
}

void Backend::check_clip_by_norm_args(const Tensor& squares, const Tensor& grad) const {
  QTUNE_CHECK(squares.dim() == 1 && squares.dtype() == DType::f64 && squares.is_contiguous(),
              "clip_by_norm: squares must be a contiguous 1-D f64 tensor, got ", shape_str(squares.shape()), " ",
              dtype_name(squares.dtype()));
  const DType dt = grad.dtype();
  QTUNE_CHECK(dt == DType::f64 || dt == DType::f32 || dt == DType::bf16 || dt == DType::f16,
              "clip_by_norm: the gradient must be floating, got ", dtype_name(dt));
  QTUNE_CHECK(grad.is_contiguous(), "clip_by_norm: the gradient must be contiguous (shape ", shape_str(grad.shape()),
              ")");
  check_on_device("clip_by_norm", {&squares, &grad});
}

void Backend::check_reduce_args(const Tensor& x, const Tensor& out) const {
  QTUNE_CHECK(x.dim() == out.dim(), "reduce: output rank ", out.dim(), " differs from input rank ", x.dim(),
              " (keep reduced dims as size 1)");
  QTUNE_CHECK(x.dtype() == out.dtype(), "reduce: dtypes differ (", dtype_name(x.dtype()), " and ",
              dtype_name(out.dtype()), ")");
  for (size_t d = 0; d < x.dim(); ++d)
    QTUNE_CHECK(out.shape()[d] == x.shape()[d] || out.shape()[d] == 1, "reduce: cannot reduce ", shape_str(x.shape()),
                " to ", shape_str(out.shape()));
  QTUNE_CHECK(out.is_contiguous(), "reduce: out must be contiguous (shape ", shape_str(out.shape()), ")");
  check_on_device("reduce", {&x, &out});
}

void Backend::check_embedding_args(std::string_view kernel, const Tensor& table, const char* table_name,
                                   const Tensor& ids, const Tensor& rows, const char* rows_name) const {
  QTUNE_CHECK(table.dim() == 2, kernel, ": ", table_name, " ", shape_str(table.shape()), " must be [V, C]");
  QTUNE_CHECK(ids.dim() == 1, kernel, ": ids ", shape_str(ids.shape()), " must be 1-D [N]");
  QTUNE_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32, kernel, ": ids must be i32 or i64, got ",
              dtype_name(ids.dtype()));
  QTUNE_CHECK(rows.shape() == Shape({ids.numel(), table.size(1)}) && rows.dtype() == table.dtype(), kernel, ": ",
              rows_name, " ", shape_str(rows.shape()), " must be [N, C] = [", ids.numel(), ", ", table.size(1), "] of ",
              dtype_name(table.dtype()));
  for (auto [t, name] : {std::pair{&table, table_name}, {&ids, "ids"}, {&rows, rows_name}}) {
    QTUNE_CHECK(t->is_contiguous(), kernel, ": ", name, " must be contiguous (shape ", shape_str(t->shape()), ")");
    check_on_device(kernel, {t});
  }
}

void Backend::check_rmsnorm_args(std::string_view kernel, const Tensor& x, const Tensor& weight, const Tensor& y,
                                 const Tensor& rstd) const {
  QTUNE_CHECK(x.dim() == 2 && weight.dim() == 1 && weight.size(0) == x.size(1), kernel, ": x ", shape_str(x.shape()),
              " and weight ", shape_str(weight.shape()), " must be [N, C] and [C]");
  QTUNE_CHECK(y.shape() == x.shape(), kernel, ": output ", shape_str(y.shape()), " must match x ",
              shape_str(x.shape()));
  QTUNE_CHECK(rstd.dim() == 1 && rstd.size(0) == x.size(0), kernel, ": rstd ", shape_str(rstd.shape()), " must be [",
              x.size(0), "]");
  QTUNE_CHECK(weight.dtype() == x.dtype() && y.dtype() == x.dtype(), kernel,
              ": x, weight and output must share a dtype (", dtype_name(x.dtype()), ", ", dtype_name(weight.dtype()),
              ", ", dtype_name(y.dtype()), ")");
  QTUNE_CHECK(rstd.dtype() == stat_dtype(x.dtype()), kernel, ": rstd must be ", dtype_name(stat_dtype(x.dtype())),
              ", got ", dtype_name(rstd.dtype()));
  for (const Tensor* t : {&x, &weight, &y, &rstd})
    QTUNE_CHECK(t->is_contiguous(), kernel, ": every operand must be contiguous (shape ", shape_str(t->shape()), ")");
  check_on_device(kernel, {&x, &weight, &y, &rstd});
}

void Backend::check_rope_args(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& y) const {
  QTUNE_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x ", shape_str(x.shape()),
              " must be [B, T, H, D] with an even head dim D");
  const int64_t seq = x.size(1), half = x.size(3) / 2;
  QTUNE_CHECK(cos.shape() == Shape({seq, half}) && sin.shape() == cos.shape(), "rope: cos ", shape_str(cos.shape()),
              " and sin ", shape_str(sin.shape()), " must be [T, D/2] = [", seq, ", ", half, "] for x ",
              shape_str(x.shape()));
  QTUNE_CHECK(y.shape() == x.shape() && y.dtype() == x.dtype(), "rope: output ", shape_str(y.shape()), " must match x ",
              shape_str(x.shape()));
  const DType table = stat_dtype(x.dtype());
  QTUNE_CHECK(cos.dtype() == table && sin.dtype() == table, "rope: cos/sin must be ", dtype_name(table), " for ",
              dtype_name(x.dtype()), " x");
  for (const Tensor* t : {&x, &cos, &sin, &y})
    QTUNE_CHECK(t->is_contiguous(), "rope: every operand must be contiguous (shape ", shape_str(t->shape()), ")");
  check_on_device("rope", {&x, &cos, &sin, &y});
}

void Backend::check_attention_args(std::string_view kernel, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& out, const Tensor& lse) const {
  QTUNE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kernel, ": q, k, v must be [B, T, H, D], got ",
              shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  QTUNE_CHECK(k.shape() == v.shape(), kernel, ": k ", shape_str(k.shape()), " and v ", shape_str(v.shape()), " differ");
  QTUNE_CHECK(q.size(0) == k.size(0), kernel, ": batch of q (", q.size(0), ") and k (", k.size(0), ") differ");
  QTUNE_CHECK(q.size(3) == k.size(3), kernel, ": head dim of q (", q.size(3), ") and k/v (", k.size(3), ") differ");
  QTUNE_CHECK(k.size(2) > 0 && q.size(2) % k.size(2) == 0, kernel, ": query heads (", q.size(2),
              ") must be a multiple of kv heads (", k.size(2), ")");
  QTUNE_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && q.dtype() == out.dtype(), kernel,
              ": q, k, v and out must share a dtype");
  QTUNE_CHECK(out.shape() == q.shape(), kernel, ": out ", shape_str(out.shape()), " must match q ",
              shape_str(q.shape()));
  const DType stat = stat_dtype(q.dtype());
  QTUNE_CHECK(lse.shape() == (Shape{q.size(0), q.size(2), q.size(1)}) && lse.dtype() == stat, kernel,
              ": lse must be [B, Hq, Tq] ", dtype_name(stat), ", got ", shape_str(lse.shape()), " ",
              dtype_name(lse.dtype()));
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&lse, "lse"}})
    QTUNE_CHECK(t->is_contiguous(), kernel, ": ", name, " must be contiguous (shape ", shape_str(t->shape()), ")");
  check_on_device(kernel, {&q, &k, &v, &out, &lse});
}

void Backend::check_attention_grads(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) const {
  for (const auto& [t, like, name] : {std::tuple{&grad_out, &q, "grad_out"},
                                      {&grad_q, &q, "grad_q"},
                                      {&grad_k, &k, "grad_k"},
                                      {&grad_v, &v, "grad_v"}}) {
    QTUNE_CHECK(t->shape() == like->shape() && t->dtype() == like->dtype(), "attention_backward: ", name, " ",
                shape_str(t->shape()), " ", dtype_name(t->dtype()), " must match ", shape_str(like->shape()), " ",
                dtype_name(like->dtype()));
    QTUNE_CHECK(t->is_contiguous(), "attention_backward: ", name, " must be contiguous (shape ", shape_str(t->shape()),
                ")");
    check_on_device("attention_backward", {t});
  }
}

void Backend::check_cross_entropy_args(std::string_view kernel, const Tensor& logits, const Tensor& targets,
                                       std::initializer_list<std::pair<const Tensor*, const char*>> stats) const {
  QTUNE_CHECK(logits.dim() == 2, kernel, ": logits must be [N, V], got ", shape_str(logits.shape()));
  QTUNE_CHECK(targets.dtype() == DType::i64, kernel, ": targets must be i64, got ", dtype_name(targets.dtype()));
  QTUNE_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), kernel, ": targets ", shape_str(targets.shape()),
              " do not match logits ", shape_str(logits.shape()));
  const int64_t rows = logits.size(0);
  const DType stat = stat_dtype(logits.dtype());
  for (auto [t, name] : stats) {
    QTUNE_CHECK(t->dim() == 1 && t->size(0) == rows, kernel, ": ", name, " must be [", rows, "], got ",
                shape_str(t->shape()));
    QTUNE_CHECK(t->dtype() == stat, kernel, ": ", name, " must be ", dtype_name(stat), " for ",
                dtype_name(logits.dtype()), " logits, got ", dtype_name(t->dtype()));
  }
  QTUNE_CHECK(logits.is_contiguous(), kernel, ": logits must be contiguous (shape ", shape_str(logits.shape()), ")");
  QTUNE_CHECK(targets.is_contiguous(), kernel, ": targets must be contiguous");
  for (auto [t, name] : stats)
    QTUNE_CHECK(t->is_contiguous(), kernel, ": ", name, " must be contiguous (shape ", shape_str(t->shape()), ")");
  check_on_device(kernel, {&logits, &targets});
  for (auto [t, name] : stats) check_on_device(kernel, {t});
}

}  // namespace qtune
