#include "models/kv_cache.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/check.h"

namespace qtune::models {
namespace {

// Room along T in the buffer behind `t`, if `t` is a prefix view of a [B, capacity, H, D] buffer.
int64_t capacity_of(const Tensor& t) {
  const int64_t h = t.size(2), d = t.size(3);
  if (t.stride(3) != 1 || t.stride(2) != d || t.stride(1) != h * d || t.stride(0) % (h * d) != 0) return 0;
  const int64_t capacity = t.stride(0) / (h * d);
  const auto needed = static_cast<size_t>(t.offset() + t.size(0) * capacity * h * d) * t.element_size();
  return needed <= t.storage()->nbytes() ? capacity : 0;
}

}  // namespace

Tensor kv_cache_append(Tensor cached, const Tensor& fresh) {
  QTUNE_CHECK(fresh.dim() == 4, "kv_cache_append: fresh keys/values must be [B, T, H, D], got ",
              shape_str(fresh.shape()));
  NoGradGuard no_grad;
  if (!cached.defined() || cached.size(1) == 0) {
    cached = Tensor();
    const int64_t b = fresh.size(0), t = fresh.size(1), h = fresh.size(2), d = fresh.size(3);
    Tensor buffer = Tensor::empty({b, std::max<int64_t>(2 * t, 16), h, d}, fresh.dtype(), fresh.device());
    Tensor out = buffer.narrow(1, 0, t);
    out.copy_(fresh);
    return out;
  }
  const Shape& cs = cached.shape();
  QTUNE_CHECK(cached.dim() == 4 && cs[0] == fresh.size(0) && cs[2] == fresh.size(2) && cs[3] == fresh.size(3),
              "kv_cache_append: cached ", shape_str(cs), " and fresh ", shape_str(fresh.shape()),
              " differ outside the time dim");
  QTUNE_CHECK(cached.dtype() == fresh.dtype() && cached.device() == fresh.device(),
              "kv_cache_append: cached and fresh tensors differ in dtype or device");
  const int64_t t0 = cs[1], t1 = fresh.size(1);
  // Sole owner: this handle is the only one on its TensorImpl, and that view the only one on the storage.
  const bool sole_owner = cached.impl_ptr().use_count() == 1 && cached.storage().use_count() == 1;
  if (sole_owner && capacity_of(cached) >= t0 + t1) {
    const Tensor grown = Tensor::from_storage(cached.storage(), {cs[0], t0 + t1, cs[2], cs[3]}, cached.strides(),
                                              cached.offset(), cached.dtype());
    cached = Tensor();
    grown.narrow(1, t0, t1).copy_(fresh);
    return grown;
  }
  Tensor buffer =
      Tensor::empty({cs[0], std::max<int64_t>(2 * (t0 + t1), 16), cs[2], cs[3]}, fresh.dtype(), fresh.device());
  buffer.narrow(1, 0, t0).copy_(cached);
  buffer.narrow(1, t0, t1).copy_(fresh);
  return buffer.narrow(1, 0, t0 + t1);
}

}  // namespace qtune::models
