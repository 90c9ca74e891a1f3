#pragma once
// llama.cpp's Q4_0, Q8_0 and Q5_0 block formats (docs/numerics.md §2 and §9), as ggml's reference quantizers
// (quantize_row_q4_0_ref, ...) compute them, in f32: the one definition of each format (K-quants:
// ggml_k_blocks.h).
// QAT's q4_0 / q8_0 fake quantization (CPU and CUDA kernels) calls the element functions, the quantized
// checkpoints and the GGUF writer go through the row codecs (quant/ggml_blocks.h), so a model trained with
// q4_0 fake quantization is stored as exactly the weights it trained with.
#include <cmath>
#include <cstdint>

#include "engine/numerics/f16.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

constexpr int64_t kGgmlBlock = 32;  // weights per Q4_0 / Q8_0 block

// ggml's block_q4_0: the fp16 scale, then 16 bytes of codes; byte j holds element j in its low nibble and
// element j + 16 in its high nibble. A code q stands for (q - 8) * d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kGgmlBlock / 2];
};
// ggml's block_q8_0: the fp16 scale, then one int8 code per element, standing for q * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kGgmlBlock];
};
// ggml's block_q5_0: the fp16 scale, the codes' fifth bits (bit j of the little-endian u32 for element j), then
// their low nibbles laid out as block_q4_0's. A code q stands for (q - 16) * d.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kGgmlBlock / 2];
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ5_0) == 22, "ggml's block sizes");

// ---- one element --------------------------------------------------------------------------------------
struct GgmlBlockScale {
  float d;          // the unrounded scale the codes are computed with
  float inv;        // 1 / d (0 for an all-zero block)
  uint16_t d_f16;   // the stored scale
  float d_rounded;  // fp16(d) as f32: what dequantization multiplies by
};

QTUNE_HD GgmlBlockScale ggml_block_scale(float d) {
  const uint16_t h = f32_to_f16_bits(d);
  return {d, d != 0.0f ? 1.0f / d : 0.0f, h, f16_bits_to_f32(h)};
}

// q4_0: `signed_absmax` is the element of largest |x| (the first one on ties), with its sign.
QTUNE_HD GgmlBlockScale q4_0_scale(float signed_absmax) { return ggml_block_scale(signed_absmax / -8.0f); }

QTUNE_HD float q4_0_unclamped(float x, const GgmlBlockScale& s) { return x * s.inv + 8.5f; }

// Truncation toward zero (the int8 cast), then min(15, .): codes 0..15, dequantized as code - 8.
QTUNE_HD int32_t q4_0_code(float x, const GgmlBlockScale& s) {
  const int32_t q = static_cast<int8_t>(q4_0_unclamped(x, s));
  return q < 15 ? q : 15;
}

QTUNE_HD bool q4_0_ste_pass(float x, const GgmlBlockScale& s) { return q4_0_unclamped(x, s) < 16.0f; }

QTUNE_HD float q4_0_dequant(int32_t q, const GgmlBlockScale& s) { return static_cast<float>(q - 8) * s.d_rounded; }

QTUNE_HD GgmlBlockScale q8_0_scale(float absmax) { return ggml_block_scale(absmax / 127.0f); }

// roundf: half away from zero. |x * inv| <= 127 up to rounding, so no clamp is needed.
QTUNE_HD int32_t q8_0_code(float x, const GgmlBlockScale& s) { return static_cast<int32_t>(roundf(x * s.inv)); }

QTUNE_HD float q8_0_dequant(int32_t q, const GgmlBlockScale& s) { return static_cast<float>(q) * s.d_rounded; }

// ---- one block of kGgmlBlock elements ------------------------------------------------------------------
// The element of largest magnitude, with its sign; the first one on ties (ggml compares with `<`).
QTUNE_HD float ggml_signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int64_t j = 0; j < kGgmlBlock; ++j) {
    const float a = fabsf(x[j]);
    if (amax < a) {
      amax = a;
      max = x[j];
    }
  }
  return max;
}

QTUNE_HD void quantize_block_q4_0(const float* x, BlockQ4_0& y) {
  const GgmlBlockScale s = q4_0_scale(ggml_signed_absmax(x));
  y.d = s.d_f16;
  for (int64_t j = 0; j < kGgmlBlock / 2; ++j) {
    const int32_t lo = q4_0_code(x[j], s), hi = q4_0_code(x[j + kGgmlBlock / 2], s);
    y.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

QTUNE_HD void dequantize_block_q4_0(const BlockQ4_0& x, float* y) {
  const GgmlBlockScale s = ggml_block_scale(f16_bits_to_f32(x.d));
  for (int64_t j = 0; j < kGgmlBlock / 2; ++j) {
    y[j] = q4_0_dequant(x.qs[j] & 0xf, s);
    y[j + kGgmlBlock / 2] = q4_0_dequant(x.qs[j] >> 4, s);
  }
}

QTUNE_HD void quantize_block_q8_0(const float* x, BlockQ8_0& y) {
  const GgmlBlockScale s = q8_0_scale(fabsf(ggml_signed_absmax(x)));
  y.d = s.d_f16;
  for (int64_t j = 0; j < kGgmlBlock; ++j) y.qs[j] = static_cast<int8_t>(q8_0_code(x[j], s));
}

QTUNE_HD void dequantize_block_q8_0(const BlockQ8_0& x, float* y) {
  const GgmlBlockScale s = ggml_block_scale(f16_bits_to_f32(x.d));
  for (int64_t j = 0; j < kGgmlBlock; ++j) y[j] = q8_0_dequant(x.qs[j], s);
}

// q5_0 (what llama.cpp writes a Q4_K tensor as when its rows are not whole super-blocks): q4_0's rule with
// d = max / -16, codes min(31, trunc(x / d + 16.5)).
QTUNE_HD void quantize_block_q5_0(const float* x, BlockQ5_0& y) {
  const GgmlBlockScale s = ggml_block_scale(ggml_signed_absmax(x) / -16.0f);
  y.d = s.d_f16;
  uint32_t high_bits = 0;
  for (int64_t j = 0; j < kGgmlBlock / 2; ++j) {
    const int32_t lo = static_cast<int8_t>(x[j] * s.inv + 16.5f), hi = static_cast<int8_t>(x[j + 16] * s.inv + 16.5f);
    const uint32_t code_lo = static_cast<uint32_t>(lo < 31 ? lo : 31),
                   code_hi = static_cast<uint32_t>(hi < 31 ? hi : 31);
    y.qs[j] = static_cast<uint8_t>((code_lo & 0xF) | ((code_hi & 0xF) << 4));
    high_bits |= ((code_lo >> 4) << j) | ((code_hi >> 4) << (j + 16));
  }
  for (int b = 0; b < 4; ++b) y.qh[b] = static_cast<uint8_t>(high_bits >> (8 * b));
}

QTUNE_HD void dequantize_block_q5_0(const BlockQ5_0& x, float* y) {
  const float d = f16_bits_to_f32(x.d);
  const uint32_t high_bits = static_cast<uint32_t>(x.qh[0]) | (static_cast<uint32_t>(x.qh[1]) << 8) |
                             (static_cast<uint32_t>(x.qh[2]) << 16) | (static_cast<uint32_t>(x.qh[3]) << 24);
  for (int64_t j = 0; j < kGgmlBlock / 2; ++j) {
    const int32_t lo = static_cast<int32_t>((x.qs[j] & 0xF) | (((high_bits >> j) & 1) << 4));
    const int32_t hi = static_cast<int32_t>((x.qs[j] >> 4) | (((high_bits >> (j + 16)) & 1) << 4));
    y[j] = static_cast<float>(lo - 16) * d;
    y[j + 16] = static_cast<float>(hi - 16) * d;
  }
}

// ---- rows: k elements (a multiple of kGgmlBlock) as k / kGgmlBlock blocks, in ggml's names ------------
QTUNE_HD void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlock; ++b) quantize_block_q4_0(x + b * kGgmlBlock, y[b]);
}
QTUNE_HD void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlock; ++b) dequantize_block_q4_0(x[b], y + b * kGgmlBlock);
}
QTUNE_HD void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlock; ++b) quantize_block_q8_0(x + b * kGgmlBlock, y[b]);
}
QTUNE_HD void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlock; ++b) dequantize_block_q8_0(x[b], y + b * kGgmlBlock);
}
QTUNE_HD void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlock; ++b) quantize_block_q5_0(x + b * kGgmlBlock, y[b]);
}

}  // namespace qtune::numerics
