#pragma once
// RoPE inverse frequencies, shared by the table builders of every backend. The float overloads
// repeat transformers' f32 arithmetic operation by operation (its inv_freq is an f32 tensor and the
// Python scalars it mixes in are cast to f32), so f32 tables match HF; the double overloads serve
// f64 gradient checks.
#include <math.h>

#include <cstdint>

#include "engine/numerics/hd.h"

namespace qtune::numerics {

QTUNE_HD float rope_pow(float base, float exponent) { return powf(base, exponent); }
QTUNE_HD double rope_pow(double base, double exponent) { return pow(base, exponent); }

// inv_freq_i = 1 / theta^(2i / d) for i in [0, d/2): HF's `1.0 / base ** (arange(0, d, 2).float() / d)`.
template <class F>
QTUNE_HD F rope_default_inv_freq(int64_t i, int64_t head_dim, double theta) {
  const F exponent = static_cast<F>(2 * i) / static_cast<F>(head_dim);
  return F(1) / rope_pow(static_cast<F>(theta), exponent);
}

// Llama 3 band rescaling of one default inverse frequency (transformers' _compute_llama3_parameters):
// long wavelengths are slowed by `factor`, short ones kept, and the band between interpolated.
template <class F>
QTUNE_HD F rope_llama3_inv_freq(F inv_freq, double factor, double low_freq_factor, double high_freq_factor,
                                double original_max_position_embeddings) {
  const double low_freq_wavelen = original_max_position_embeddings / low_freq_factor;
  const double high_freq_wavelen = original_max_position_embeddings / high_freq_factor;
  const F wavelen = static_cast<F>(2.0 * 3.14159265358979323846) / inv_freq;
  if (wavelen > static_cast<F>(low_freq_wavelen)) return inv_freq / static_cast<F>(factor);
  if (wavelen < static_cast<F>(high_freq_wavelen)) return inv_freq;
  const F smooth = (static_cast<F>(original_max_position_embeddings) / wavelen - static_cast<F>(low_freq_factor)) /
                   static_cast<F>(high_freq_factor - low_freq_factor);
  return (F(1) - smooth) * inv_freq / static_cast<F>(factor) + smooth * inv_freq;
}

// What llama.cpp divides a default inverse frequency by for Llama 3 scaling (GGUF's rope_freqs.weight, written
// as llama.cpp's converter computes it): 1 for short wavelengths, `factor` for long ones, and between them the
// ratio of the default frequency to rope_llama3_inv_freq's.
template <class F>
QTUNE_HD F rope_llama3_divisor(F inv_freq, double factor, double low_freq_factor, double high_freq_factor,
                               double original_max_position_embeddings) {
  const F wavelen = static_cast<F>(2.0 * 3.14159265358979323846) / inv_freq;
  if (wavelen < static_cast<F>(original_max_position_embeddings / high_freq_factor)) return F(1);
  if (wavelen > static_cast<F>(original_max_position_embeddings / low_freq_factor)) return static_cast<F>(factor);
  const F smooth = (static_cast<F>(original_max_position_embeddings) / wavelen - static_cast<F>(low_freq_factor)) /
                   static_cast<F>(high_freq_factor - low_freq_factor);
  return F(1) / ((F(1) - smooth) / static_cast<F>(factor) + smooth);
}

}  // namespace qtune::numerics
