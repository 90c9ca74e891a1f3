#include "ops/matmul.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace qtune::ops {
namespace {

// A [batch, rows, cols] view of a matrix operand whose last dim has stride 1 for the GEMM. A
// transposed view (stride 1 on the second-last dim) is passed as its transpose with the flag
// flipped, so transposes never copy.
struct GemmOperand {
  Tensor t;
  bool trans;
};

GemmOperand as_gemm_operand(Tensor m, bool trans, const Shape& batch) {
  const size_t r = m.dim();
  if (m.stride(-1) != 1 && m.size(-1) != 1) {
    if (m.stride(-2) == 1 || m.size(-2) == 1) {
      m = m.transpose(-1, -2);
      trans = !trans;
    } else {
      m = m.contiguous();
    }
  }
  const int64_t rows = m.size(-2), cols = m.size(-1);
  if (r == 2) {
    // One matrix shared by the whole batch: batch stride 0.
    const int64_t b = numel_of(batch);
    return {m.unsqueeze(0).expand({b, rows, cols}), trans};
  }
  Shape full = batch;
  full.push_back(rows);
  full.push_back(cols);
  Tensor e = m.expand(full);
  Tensor flat = e.dim() == 3 ? e : e.reshape({numel_of(batch), rows, cols});
  if (flat.stride(-1) != 1 && flat.size(-1) != 1) flat = flat.contiguous();
  return {flat, trans};
}

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, Shape& batch_out) {
  QTUNE_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands need at least 2 dims, got ", shape_str(a.shape()),
              " and ", shape_str(b.shape()));
  QTUNE_CHECK(a.dtype() == b.dtype(), "matmul: dtypes differ (", dtype_name(a.dtype()), " vs ", dtype_name(b.dtype()),
              ")");
  const int64_t m = trans_a ? a.size(-1) : a.size(-2), k = trans_a ? a.size(-2) : a.size(-1);
  const int64_t kb = trans_b ? b.size(-1) : b.size(-2), n = trans_b ? b.size(-2) : b.size(-1);
  QTUNE_CHECK(k == kb, "matmul: inner dims differ: ", shape_str(a.shape()), (trans_a ? "^T" : ""), " @ ",
              shape_str(b.shape()), (trans_b ? "^T" : ""));
  const Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(batch_a, batch_b);
  batch_out = batch;
  NoGradGuard no_grad;
  GemmOperand ga = as_gemm_operand(a, trans_a, batch), gb = as_gemm_operand(b, trans_b, batch);
  Tensor c = Tensor::empty({numel_of(batch), m, n}, a.dtype(), a.device());
  backend_for(a.device()).gemm(ga.t, ga.trans, gb.t, gb.trans, c, 1.0, 0.0);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  return c.view(out_shape);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  Shape batch;
  Tensor out = matmul_forward(a, b, trans_a, trans_b, batch);
  if (autograd::needs_grad({a, b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    autograd::record("matmul", {a, b}, {out},
                     [a = a.detach(), b = b.detach(), trans_a, trans_b, need_a, need_b](const std::vector<Tensor>& g) {
                       Tensor grad_a, grad_b;
                       if (need_a) {
                         // d op(a) = g @ op(b)^T; undo the transpose of op for a.
                         Tensor d = trans_a ? matmul(b, g[0], trans_b, true) : matmul(g[0], b, false, !trans_b);
                         grad_a = sum_to(d, a.shape());
                       }
                       if (need_b) {
                         Tensor d = trans_b ? matmul(g[0], a, true, trans_a) : matmul(a, g[0], !trans_a, false);
                         grad_b = sum_to(d, b.shape());
                       }
                       return std::vector<Tensor>{grad_a, grad_b};
                     });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  QTUNE_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.shape()),
              " does not match weight ", shape_str(weight.shape()), " ([out, in])");
  const int64_t in = weight.size(1), out_features = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor y = matmul(x.reshape({-1, in}), weight, false, true);
  if (bias.defined()) {
    QTUNE_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear: bias ", shape_str(bias.shape()),
                " does not match ", out_features, " output features");
    y = add(y, bias);
  }
  return y.reshape(out_shape);
}

}  // namespace qtune::ops
