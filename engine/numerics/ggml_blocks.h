#pragma once
// llama.cpp's Q4_0 and Q8_0 block formats (docs/numerics.md §2 and §9), as ggml's reference quantizers
// (quantize_row_q4_0_ref, quantize_row_q8_0_ref) compute them, in f32: the one definition of each format.
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
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ8_0) == 34, "ggml's block sizes");

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

// ---- K-quants: super-blocks of 256 (read from llama.cpp's files; qtune does not write them yet) ----------
constexpr int64_t kGgmlSuperBlock = 256;

// ggml's block_q4_K: f16 super-block scales d and dmin, eight 6-bit sub-block scales and eight 6-bit mins
// packed into 12 bytes, then 4-bit codes: byte l of each 32-byte group holds element l of one 32-weight
// sub-block in its low nibble and element l of the next in its high one. Weight = d*sc*q - dmin*m.
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kGgmlSuperBlock / 2];
};
// ggml's block_q6_K: 6-bit codes as low nibbles (ql) and high 2 bits (qh), sixteen int8 scales of 16 weights
// each, and the f16 super-block scale. Weight = d * scale * (q - 32).
struct BlockQ6_K {
  uint8_t ql[kGgmlSuperBlock / 2];
  uint8_t qh[kGgmlSuperBlock / 4];
  int8_t scales[kGgmlSuperBlock / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210, "ggml's K-quant block sizes");

// Sub-block j's 6-bit scale and min in the 12 packed bytes: bytes 0-3 hold the scales of sub-blocks 0-3 and bytes
// 4-7 their mins in the low 6 bits; sub-blocks 4-7 take their low 4 bits from bytes 8-11 (scale low nibble, min
// high nibble) and their top 2 bits from the spare top bits of bytes 0-3 (scales) and 4-7 (mins).
QTUNE_HD void q4_k_scale_min(int j, const uint8_t* packed, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = packed[j] & 63;
    min = packed[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
  }
}

QTUNE_HD void dequantize_block_q4_K(const BlockQ4_K& x, float* y) {
  const float d = f16_bits_to_f32(x.d), dmin = f16_bits_to_f32(x.dmin);
  for (int group = 0; group < 4; ++group) {  // 64 weights: two sub-blocks sharing 32 bytes
    const uint8_t* q = x.qs + 32 * group;
    for (int half = 0; half < 2; ++half) {
      uint8_t sc = 0, m = 0;
      q4_k_scale_min(2 * group + half, x.scales, sc, m);
      const float scale = d * sc, offset = dmin * m;
      for (int l = 0; l < 32; ++l) {
        const int code = half == 0 ? (q[l] & 0xF) : (q[l] >> 4);
        y[64 * group + 32 * half + l] = scale * static_cast<float>(code) - offset;
      }
    }
  }
}

QTUNE_HD void dequantize_block_q6_K(const BlockQ6_K& x, float* y) {
  const float d = f16_bits_to_f32(x.d);
  for (int n = 0; n < 2; ++n) {  // two halves of 128 weights
    const uint8_t* ql = x.ql + 64 * n;
    const uint8_t* qh = x.qh + 32 * n;
    const int8_t* sc = x.scales + 8 * n;
    float* out = y + 128 * n;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * sc[is] * static_cast<float>(q1);
      out[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      out[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      out[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
  }
}

}  // namespace qtune::numerics
