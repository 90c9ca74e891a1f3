#pragma once
// llama.cpp's K-quant formats (docs/numerics.md §9): super-blocks of 256 weights with sub-block scales, as
// ggml's block structs lay them out and its dequantize_row_q{4,5,6}_K compute them. The quantizers, ggml's
// iterative scale search, are host code beside them (ggml_k_quantize.h).
#include <cstdint>

#include "engine/numerics/f16.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

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
// ggml's block_q5_K: block_q4_K's scales and low nibbles, plus the codes' fifth bits: bit 2g of qh[l] for element
// l of sub-block 2g, bit 2g + 1 for element l of sub-block 2g + 1.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kGgmlSuperBlock / 8];
  uint8_t qs[kGgmlSuperBlock / 2];
};
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210,
              "ggml's K-quant block sizes");

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

QTUNE_HD void dequantize_block_q5_K(const BlockQ5_K& x, float* y) {
  const float d = f16_bits_to_f32(x.d), dmin = f16_bits_to_f32(x.dmin);
  for (int group = 0; group < 4; ++group) {
    const uint8_t* q = x.qs + 32 * group;
    for (int half = 0; half < 2; ++half) {
      const int sub = 2 * group + half;
      uint8_t sc = 0, m = 0;
      q4_k_scale_min(sub, x.scales, sc, m);
      const float scale = d * sc, offset = dmin * m;
      for (int l = 0; l < 32; ++l) {
        const int low = half == 0 ? (q[l] & 0xF) : (q[l] >> 4);
        const int code = low + (((x.qh[l] >> sub) & 1) << 4);
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
