#pragma once
// The keys and values a Llama has already computed, so that decoding one more token costs one
// token's work instead of the whole sequence's.
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace qtune::models {

// Keys and values of earlier positions, per layer; grows by the tokens each forward appends.
struct KVCache {
  std::vector<Tensor> k, v;  // per layer: [B, T_cached, Hkv, D]
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(1); }
  void clear() {
    k.clear();
    v.clear();
  }
};

// cached: [B, T0, H, D] or undefined; fresh: [B, T1, H, D] -> [B, T0 + T1, H, D] (no autograd).
// The result is a view into a buffer with spare room along T that grows by doubling, so decoding N
// tokens copies O(N) elements rather than O(N^2). The spare room is written in place only when
// nothing but `cached` references the buffer; a copied KVCache (a second branch of decoding from
// the same prefix) therefore never sees the other branch's writes.
Tensor kv_cache_append(Tensor cached, const Tensor& fresh);

}  // namespace qtune::models
