// Embedding gather and its scatter-add backward.
#include <algorithm>
#include <cstring>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

// Calls f(const I* ids) with I the index type; every id is checked before any row is touched, so
// errors are raised outside the parallel region.
template <class F>
void with_checked_ids(const char* kernel, const Tensor& ids, int64_t vocab, F&& f) {
  auto run = [&](auto tag) {
    using I = decltype(tag);
    const I* p = ptr<I>(ids);
    for (int64_t n = 0; n < ids.numel(); ++n)
      QTUNE_CHECK(p[n] >= 0 && static_cast<int64_t>(p[n]) < vocab, kernel, ": id ", static_cast<int64_t>(p[n]),
                  " at position ", n, " is out of range for a vocabulary of V = ", vocab);
    f(p);
  };
  if (ids.dtype() == DType::i64)
    run(int64_t{});
  else
    run(int32_t{});
}

}  // namespace

void CpuBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  check_embedding_args("embedding", weight, "weight", ids, out, "output");
  const int64_t vocab = weight.size(0), cols = weight.size(1);
  const auto* src = static_cast<const unsigned char*>(weight.data_ptr());
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  const size_t row_bytes = static_cast<size_t>(cols) * weight.element_size();
  with_checked_ids("embedding", ids, vocab, [&](const auto* p) {
    parallel_for(ids.numel(), std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t n = begin; n < end; ++n)
                     std::memcpy(dst + static_cast<size_t>(n) * row_bytes, src + static_cast<size_t>(p[n]) * row_bytes,
                                 row_bytes);
                 });
  });
}

void CpuBackend::embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_weight) {
  check_embedding_args("embedding_backward", grad_weight, "grad_weight", ids, grad_out, "grad_out");
  const int64_t vocab = grad_weight.size(0), cols = grad_weight.size(1);
  dispatch_float(grad_weight.dtype(), "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = ptr<T>(grad_out);
    T* gw = ptr<T>(grad_weight);
    with_checked_ids("embedding_backward", ids, vocab, [&](const auto* p) {
      // Repeated ids hit the same row, so threads split the columns, not the ids: no two threads
      // ever add into the same element, and each row still sums its ids in order.
      const int64_t n_ids = ids.numel();
      parallel_for(cols, n_ids * cols >= 32768 ? 64 : cols, [&](int64_t c0, int64_t c1) {
        for (int64_t n = 0; n < n_ids; ++n) {
          const T* src = g + n * cols;
          T* dst = gw + static_cast<int64_t>(p[n]) * cols;
          for (int64_t c = c0; c < c1; ++c) store(dst + c, load(dst + c) + load(src + c));
        }
      });
    });
  });
}

}  // namespace qtune::cpu
