// Fused cross-entropy: forward makes two passes per row, the max and then the sum of exponentials (no
// softmax copy); backward writes grad_logits = grad_loss * (softmax - onehot) directly from the saved
// lse. Both passes keep 16 independent partial results (row_max.h, row_sum.h) so that they vectorize.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/row_max.h"
#include "cpu/row_sum.h"
#include "cpu/vec_exp.h"

namespace qtune::cpu {
namespace {

// Every target is checked before any thread starts (an exception cannot leave an OpenMP region).
void check_targets(const char* kernel, const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const int64_t* tg = ptr<int64_t>(targets);
  for (int64_t r = 0; r < rows; ++r)
    QTUNE_CHECK(tg[r] == ignore_index || (tg[r] >= 0 && tg[r] < vocab), kernel, ": target ", tg[r], " at row ", r,
                " is out of range for V = ", vocab, " (and is not ignore_index ", ignore_index, ")");
}

int64_t row_grain(int64_t cols) { return cols >= (1 << 14) ? 1 : (1 << 14) / (cols > 0 ? cols : 1); }

}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& loss,
                               const Tensor& lse) {
  check_cross_entropy_args("cross_entropy", logits, targets, {{&loss, "loss"}, {&lse, "lse"}});
  check_targets("cross_entropy", logits, targets, ignore_index);
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* x = ptr<T>(logits);
    const int64_t* tg = ptr<int64_t>(targets);
    A* pl = ptr<A>(loss);
    A* ps = ptr<A>(lse);
    parallel_for(rows, row_grain(vocab), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (tg[r] == ignore_index) {
          pl[r] = 0;
          ps[r] = 0;
          continue;
        }
        const T* xr = x + r * vocab;
        const A mx = row_max(xr, vocab);
        const A sum = row_sum<A>(vocab, [&](int64_t c) { return vec_exp(load(xr + c) - mx); });
        const A row_lse = mx + std::log(sum);
        ps[r] = row_lse;
        pl[r] = row_lse - load(xr + tg[r]);
      }
    });
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                        const Tensor& lse, const Tensor& grad_loss, const Tensor& grad_logits) {
  check_cross_entropy_args("cross_entropy_backward", logits, targets, {{&lse, "lse"}, {&grad_loss, "grad_loss"}});
  check_like("cross_entropy_backward", logits, "logits", grad_logits, "grad_logits");
  check_targets("cross_entropy_backward", logits, targets, ignore_index);
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* x = ptr<T>(logits);
    const int64_t* tg = ptr<int64_t>(targets);
    const A* ps = ptr<A>(lse);
    const A* pg = ptr<A>(grad_loss);
    T* dx = ptr<T>(grad_logits);
    parallel_for(rows, row_grain(vocab), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        T* dr = dx + r * vocab;
        if (tg[r] == ignore_index) {
          for (int64_t c = 0; c < vocab; ++c) store(dr + c, A(0));
          continue;
        }
        const T* xr = x + r * vocab;
        const A g = pg[r], row_lse = ps[r];
        for (int64_t c = 0; c < vocab; ++c) store(dr + c, g * vec_exp(load(xr + c) - row_lse));
        store(dr + tg[r], g * (vec_exp(load(xr + tg[r]) - row_lse) - A(1)));
      }
    });
  });
}

}  // namespace qtune::cpu
