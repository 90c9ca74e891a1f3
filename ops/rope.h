#pragma once
// Rotary position embeddings in HF's rotate-half layout (pairs (i, i + D/2) within each head), with
// optional Llama 3 rope scaling. Angles are tabulated once per sequence and shared by every layer.
#include <cstdint>
#include <utility>

#include "engine/tensor.h"

namespace qtune::ops {

// HF config.rope_scaling. `none` is plain RoPE; `llama3` is rope_type "llama3".
struct RopeScaling {
  enum class Type { none, llama3 };
  Type type = Type::none;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// inv_freq: [head_dim / 2] of `dtype` (f32 as transformers computes it; f64 for gradient checks).
Tensor rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling = {}, DType dtype = DType::f32);

// positions: [T] i32/i64 (any device; read on the host). Returns {cos, sin}, each [T, head_dim / 2]
// of `dtype` (f32 for f32/bf16/f16 activations, f64 for f64) on `device`: angle = position * inv_freq,
// multiplied in `dtype` as HF does.
std::pair<Tensor, Tensor> rope_tables(const Tensor& positions, int64_t head_dim, double theta,
                                      const RopeScaling& scaling = {}, DType dtype = DType::f32,
                                      Device device = Device::cpu());
// Positions start, start + 1, ..., start + length - 1.
std::pair<Tensor, Tensor> rope_tables(int64_t start, int64_t length, int64_t head_dim, double theta,
                                      const RopeScaling& scaling = {}, DType dtype = DType::f32,
                                      Device device = Device::cpu());

// x: [B, T, H, D]; cos, sin: [T, D/2] from rope_tables (f64 for f64 x, else f32) -> [B, T, H, D].
// For bf16/f16 x the tables are first rounded to x's dtype, as HF casts cos/sin to the activation
// dtype before applying them; the rotation itself is computed in f32.
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace qtune::ops
