#pragma once
// NF4 (QLoRA storage) as torchao's to_nf4 computes it (docs/numerics.md §1). D is the dtype of the weight
// being quantized, float or bf16_t; every step that torchao runs in D is computed in f32 and rounded to
// D, which is what a bf16 tensor op does. Values are passed around as floats that hold D values.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "engine/dtype.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

constexpr int64_t kNF4BlockSize = 64;         // weights per absmax
constexpr int64_t kNF4ScalerBlockSize = 256;  // absmaxes per double-quantization factor
// The mean of the absmaxes is summed in f64 over fixed chunks of this many, each chunk in order, then
// the chunk sums in order: the same bits on every backend and thread count.
constexpr int64_t kNF4MeanChunk = 4096;

// An f32 result rounded to D's precision.
template <class D>
QTUNE_HD float round_to(float v) {
  if constexpr (std::is_same_v<D, bf16_t>)
    return round_to_bf16(v);
  else
    return v;
}

// The code table as the decimal literals (the f32 nearest of each; for bf16 the f32 -> bf16 rounding
// equals the direct decimal -> bf16 one for all 16), converted to D [exact].
template <class D>
QTUNE_HD float nf4_code_value(int code) {
  constexpr float kTable[16] = {-1.0f,   -0.6962f, -0.5251f, -0.3949f, -0.2844f, -0.1848f, -0.0911f, 0.0f,
                                0.0796f, 0.1609f,  0.2461f,  0.3379f,  0.4407f,  0.5626f,  0.7230f,  1.0f};
  return round_to<D>(kTable[code]);
}

// The code nearest to x (a D value, normally in [-1, 1]): |x - code| computed in D, ties to the lower
// index. table: the 16 values of nf4_code_value<D>, hoisted by the caller.
template <class D>
QTUNE_HD uint8_t nf4_nearest_code(float x, const float* table) {
  uint8_t best = 0;
  float best_diff = fabsf(round_to<D>(x - table[0]));
  for (int c = 1; c < 16; ++c) {
    const float diff = fabsf(round_to<D>(x - table[c]));
    if (diff < best_diff) {  // strict: an equal difference keeps the lower index
      best_diff = diff;
      best = static_cast<uint8_t>(c);
    }
  }
  return best;
}

// The code of weight w in a block with absmax `absmax`: x = w / absmax is a true division in D [exact].
// A zero block (absmax 0) gives code 7 (0.0), so it dequantizes to zeros; torchao divides 0 by 0 there
// and ends up with NaN.
template <class D>
QTUNE_HD uint8_t nf4_quantize_value(float w, float absmax, const float* table) {
  if (absmax == 0.0f) return 7;
  return nf4_nearest_code<D>(round_to<D>(w / absmax), table);
}

// mean = sum / count, rounded to f32 and then to D (torch's bf16 mean gives the same bits).
template <class D>
QTUNE_HD float nf4_mean(double sum, int64_t count) {
  return round_to<D>(static_cast<float>(sum / static_cast<double>(count)));
}

// The mean of `blocks` absmaxes: f64 sums over chunks of kNF4MeanChunk, each chunk in order, then the chunk
// sums in order, rounded as nf4_mean. A weight quantized in pieces (a sharded load) gathers every piece's
// absmaxes and gets the one-piece bits from this.
template <class D>
float nf4_absmax_mean(const float* absmax, int64_t blocks) {
  double sum = 0.0;
  for (int64_t first = 0; first < blocks; first += kNF4MeanChunk) {
    double chunk = 0.0;
    for (int64_t i = first; i < first + kNF4MeanChunk && i < blocks; ++i) chunk += absmax[i];
    sum += chunk;
  }
  return nf4_mean<D>(sum, blocks);
}

// factor = 256 / (2 * max|s|) in D for a scaler block whose centred absmaxes s reach max|s|. A block of
// equal absmaxes (max|s| = 0) gets an infinite factor, as in torchao; its q8 are 0 and dequantize to 0.
template <class D>
QTUNE_HD float nf4_scaler_factor(float max_abs_s) {
  return round_to<D>(256.0f / round_to<D>(2.0f * max_abs_s));
}

// q8 = clamp(round(s * factor), -128, 127), the product in D, round half to even. 0 * inf (a block of
// equal absmaxes) is NaN and stores 0.
template <class D>
QTUNE_HD int8_t nf4_quantize_scaler(float s, float factor) {
  const float v = rintf(round_to<D>(s * factor));
  if (!(v == v)) return 0;
  return static_cast<int8_t>(v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v));
}

// The block scale from its stored parts: (q8 / factor) + mean, each step in D.
template <class D>
QTUNE_HD float nf4_block_scale(int8_t q8, float factor, float mean) {
  return round_to<D>(round_to<D>(static_cast<float>(q8) / factor) + mean);
}

// One dequantized weight: table[code] * scale in D.
template <class D>
QTUNE_HD float nf4_dequantize_value(uint8_t code, float scale, const float* table) {
  return round_to<D>(table[code] * scale);
}

// Two codes per byte: element 2i in the high nibble, 2i + 1 in the low one.
QTUNE_HD uint8_t nf4_pack(uint8_t even, uint8_t odd) { return static_cast<uint8_t>((even << 4) | odd); }
QTUNE_HD uint8_t nf4_code_at(const uint8_t* packed, int64_t i) {
  return (i & 1) ? (packed[i >> 1] & 0x0f) : (packed[i >> 1] >> 4);
}

}  // namespace qtune::numerics
