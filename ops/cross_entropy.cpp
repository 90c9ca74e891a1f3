#include "ops/cross_entropy.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace qtune::ops {

namespace {

// The fused kernel's outputs over logits flattened to rows, shared by the mean loss and the per-position one.
struct RowLosses {
  Tensor rows;  // [N, V], detached
  Tensor tg;    // [N] i64
  Tensor loss;  // [N] f32 (f64 for f64 logits), 0 for ignored rows
  Tensor lse;   // [N], the log-sum-exp of each row
};

RowLosses row_losses(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  QTUNE_CHECK(logits.dim() == targets.dim() + 1 && logits.dim() >= 2 && logits.dim() <= 3,
              "cross_entropy: logits must be [N, V] or [B, T, V] with targets [N] or [B, T], got logits ",
              shape_str(logits.shape()), " and targets ", shape_str(targets.shape()));
  for (size_t d = 0; d < targets.dim(); ++d)
    QTUNE_CHECK(targets.size(static_cast<int64_t>(d)) == logits.size(static_cast<int64_t>(d)),
                "cross_entropy: targets ", shape_str(targets.shape()), " do not match logits ",
                shape_str(logits.shape()));
  QTUNE_CHECK(targets.dtype() == DType::i64, "cross_entropy: targets must be i64, got ", dtype_name(targets.dtype()));
  QTUNE_CHECK(logits.device() == targets.device(), "cross_entropy: logits and targets are on different devices");
  const int64_t vocab = logits.size(-1);
  RowLosses out;
  out.rows = logits.detach().contiguous().view({-1, vocab});
  out.tg = targets.detach().contiguous().view({-1});
  const int64_t n = out.rows.size(0);
  const DType stat = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  out.loss = Tensor::empty({n}, stat, logits.device());
  out.lse = Tensor::empty({n}, stat, logits.device());
  if (n > 0) backend_for(logits.device()).cross_entropy(out.rows, out.tg, ignore_index, out.loss, out.lse);
  return out;
}

}  // namespace

Tensor cross_entropy_per_position(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  return row_losses(logits, targets, ignore_index).loss.view(targets.shape());
}

int64_t count_targets(const Tensor& targets, int64_t ignore_index) {
  int64_t count = 0;
  for (int64_t t : targets.to_vector<int64_t>()) count += t != ignore_index;
  return count;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, int64_t counted) {
  const RowLosses r = row_losses(logits, targets, ignore_index);
  QTUNE_CHECK(counted >= -1 && counted <= r.tg.numel(), "cross_entropy: counted = ", counted, " targets of ",
              r.tg.numel());
  const int64_t count = counted >= 0 ? counted : count_targets(r.tg, ignore_index);
  // The mean over counted rows; ignored rows hold 0, and no counted row means a loss of 0.
  const double inv_count = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;
  Tensor loss;
  {
    NoGradGuard no_grad;
    loss = scale(sum(r.loss), inv_count);
  }
  if (autograd::needs_grad({logits}))
    autograd::record("cross_entropy", {logits}, {loss},
                     [rows = r.rows, tg = r.tg, lse = r.lse, ignore_index, inv_count,
                      shape = logits.shape()](const std::vector<Tensor>& g) {
                       const Tensor grad_loss = scale(g[0].reshape({1}).expand({rows.size(0)}), inv_count);
                       Tensor grad = Tensor::empty(rows.shape(), rows.dtype(), rows.device());
                       if (rows.size(0) > 0)
                         backend_for(rows.device())
                             .cross_entropy_backward(rows, tg, ignore_index, lse, grad_loss.contiguous(), grad);
                       return std::vector<Tensor>{grad.view(shape)};
                     });
  return loss;
}

}  // namespace qtune::ops
