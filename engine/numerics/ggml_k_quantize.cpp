#include "engine/numerics/ggml_k_quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qtune::numerics {
namespace {

constexpr int kSubBlock = 32;       // weights per Q4_K / Q5_K sub-block
constexpr int kQ6SubBlock = 16;     // weights per Q6_K sub-block
constexpr float kAllZero = 1e-15f;  // a Q6_K sub-block whose largest |x| is below this quantizes to zeros
constexpr float kStepDelta = 0.1f;  // spacing of the candidate inverse scales, in codes

// Round half to even, as ggml's quantizers round (valid for |v| < 2^22, far beyond any code here): adding
// 1.5 * 2^23 leaves the rounded integer in the low mantissa bits.
int round_to_int(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits = 0;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

int clamp(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Codes 0..nmax and a scale and (non-positive) offset for x ~ scale * code + offset, minimizing the squared error
// weighted by w: first the min-max fit, then nstep + 1 inverse scales (nmax + rmin + 0.1 i) / (max - min), each
// refit by weighted least squares for scale and offset (the offset forced to 0 when the fit wants it positive).
// Returns the scale; *neg_offset = -offset.
float search_asymmetric(const float* x, const float* w, int nmax, float rmin, int nstep, uint8_t* codes,
                        float* neg_offset) {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < kSubBlock; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(codes, codes + kSubBlock, uint8_t{0});
    *neg_offset = -min;
    return 0.0f;
  }
  float inv = static_cast<float>(nmax) / (max - min);
  float scale = 1 / inv;
  float best_error = 0;
  for (int i = 0; i < kSubBlock; ++i) {
    codes[i] = static_cast<uint8_t>(clamp(round_to_int(inv * (x[i] - min)), 0, nmax));
    const float diff = scale * codes[i] + min - x[i];
    best_error += w[i] * (diff * diff);
  }
  uint8_t trial[kSubBlock];
  for (int step = 0; step <= nstep; ++step) {
    inv = (rmin + kStepDelta * static_cast<float>(step) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < kSubBlock; ++i) {
      const int l = clamp(round_to_int(inv * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float trial_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float trial_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (trial_min > 0) {
      trial_min = 0;
      trial_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < kSubBlock; ++i) {
      const float diff = trial_scale * trial[i] + trial_min - x[i];
      error += w[i] * (diff * diff);
    }
    if (error < best_error) {
      std::copy(trial, trial + kSubBlock, codes);
      best_error = error;
      scale = trial_scale;
      min = trial_min;
    }
  }
  *neg_offset = -min;
  return scale;
}

// Signed codes -nmax..nmax-1 (stored + nmax) and the scale for x ~ scale * code minimizing sum x^2 (x - scale *
// code)^2: the inverse scale -nmax / max and 18 neighbours -(nmax + 0.1 i) / max, each refit by least squares,
// where max is the element of largest magnitude with its sign.
float search_symmetric(const float* x, int n, int nmax, int8_t* codes) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      max = x[i];
    }
  }
  if (amax < kAllZero) {
    std::fill(codes, codes + n, int8_t{0});
    return 0.0f;
  }
  auto code = [&](float inv, int i) { return clamp(round_to_int(inv * x[i]), -nmax, nmax - 1); };
  // The weighted sums of one candidate, codes written when `store`.
  auto fit = [&](float inv, bool store, float& sum_lx, float& sum_l2) {
    sum_lx = 0;
    sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = code(inv, i);
      if (store) codes[i] = static_cast<int8_t>(l + nmax);
      const float fl = static_cast<float>(l);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * fl;
      sum_l2 += w * fl * fl;
    }
  };
  float sum_lx = 0, sum_l2 = 0;
  fit(static_cast<float>(-nmax) / max, true, sum_lx, sum_l2);
  float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    const float inv = -(static_cast<float>(nmax) + kStepDelta * static_cast<float>(step)) / max;
    fit(inv, false, sum_lx, sum_l2);
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(code(inv, i) + nmax);
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

// Q4_K and Q5_K: eight sub-blocks searched with weights sqrt(mean x^2) + |x|, their scales and offsets stored as
// 6-bit multiples of the super-block's f16 d and dmin, then every code recomputed against the stored values.
// codes: [256] in 0..nmax.
void quantize_super_block_asymmetric(const float* x, int nmax, float rmin, int nstep, uint16_t& d, uint16_t& dmin,
                                     uint8_t* packed_scales, uint8_t* codes) {
  constexpr int kSubBlocks = kGgmlSuperBlock / kSubBlock;
  float scales[kSubBlocks], offsets[kSubBlocks], weights[kSubBlock];
  float max_scale = 0, max_offset = 0;
  for (int j = 0; j < kSubBlocks; ++j) {
    const float* xs = x + kSubBlock * j;
    float sum_x2 = 0;
    for (int l = 0; l < kSubBlock; ++l) sum_x2 += xs[l] * xs[l];
    const float rms = std::sqrt(sum_x2 / kSubBlock);
    for (int l = 0; l < kSubBlock; ++l) weights[l] = rms + std::fabs(xs[l]);
    scales[j] = search_asymmetric(xs, weights, nmax, rmin, nstep, codes + kSubBlock * j, &offsets[j]);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (offsets[j] > max_offset) max_offset = offsets[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_offset = max_offset > 0 ? 63.0f / max_offset : 0.0f;
  for (int j = 0; j < kSubBlocks; ++j) {
    // The uint8 conversion first, as ggml's: a negative rounding wraps and is then clamped to 63.
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(round_to_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(round_to_int(inv_offset * offsets[j])));
    if (j < 4) {
      packed_scales[j] = ls;
      packed_scales[j + 4] = lm;
    } else {
      packed_scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed_scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed_scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  d = f32_to_f16_bits(max_scale / 63.0f);
  dmin = f32_to_f16_bits(max_offset / 63.0f);
  for (int j = 0; j < kSubBlocks; ++j) {
    uint8_t sc = 0, m = 0;
    q4_k_scale_min(j, packed_scales, sc, m);
    const float step = f16_bits_to_f32(d) * sc;
    if (step == 0) continue;  // the search's codes stay: they multiply a zero scale
    const float offset = f16_bits_to_f32(dmin) * m;
    for (int l = 0; l < kSubBlock; ++l)
      codes[kSubBlock * j + l] =
          static_cast<uint8_t>(clamp(round_to_int((x[kSubBlock * j + l] + offset) / step), 0, nmax));
  }
}

}  // namespace

void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t k) {
  uint8_t codes[kGgmlSuperBlock];
  for (int64_t b = 0; b < k / kGgmlSuperBlock; ++b, x += kGgmlSuperBlock) {
    BlockQ4_K& out = y[b];
    quantize_super_block_asymmetric(x, 15, -1.0f, 20, out.d, out.dmin, out.scales, codes);
    for (int group = 0; group < 4; ++group)  // 64 weights: two sub-blocks' codes share 32 bytes
      for (int l = 0; l < 32; ++l)
        out.qs[32 * group + l] = static_cast<uint8_t>(codes[64 * group + l] | (codes[64 * group + 32 + l] << 4));
  }
}

void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t k) {
  uint8_t codes[kGgmlSuperBlock];
  for (int64_t b = 0; b < k / kGgmlSuperBlock; ++b, x += kGgmlSuperBlock) {
    BlockQ5_K& out = y[b];
    quantize_super_block_asymmetric(x, 31, -0.5f, 15, out.d, out.dmin, out.scales, codes);
    std::fill(out.qh, out.qh + kGgmlSuperBlock / 8, uint8_t{0});
    for (int group = 0; group < 4; ++group) {
      for (int l = 0; l < 32; ++l) {
        const int lo = codes[64 * group + l], hi = codes[64 * group + 32 + l];
        out.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * group)) | ((hi >> 4) << (2 * group + 1)));
        out.qs[32 * group + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      }
    }
  }
}

void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t k) {
  constexpr int kSubBlocks = kGgmlSuperBlock / kQ6SubBlock;
  int8_t codes[kGgmlSuperBlock];  // 0..63: signed code + 32
  for (int64_t b = 0; b < k / kGgmlSuperBlock; ++b, x += kGgmlSuperBlock) {
    BlockQ6_K& out = y[b];
    float scales[kSubBlocks];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < kSubBlocks; ++j) {
      scales[j] = search_symmetric(x + kQ6SubBlock * j, kQ6SubBlock, 32, codes + kQ6SubBlock * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kAllZero) {
      std::memset(&out, 0, sizeof(out));
      continue;
    }
    const float inv = -128.0f / max_scale;
    out.d = f32_to_f16_bits(1 / inv);
    for (int j = 0; j < kSubBlocks; ++j)
      out.scales[j] = static_cast<int8_t>(std::min(127, round_to_int(inv * scales[j])));
    for (int j = 0; j < kSubBlocks; ++j) {
      const float step = f16_bits_to_f32(out.d) * out.scales[j];
      if (step == 0) continue;
      for (int l = 0; l < kQ6SubBlock; ++l)
        codes[kQ6SubBlock * j + l] =
            static_cast<int8_t>(clamp(round_to_int(x[kQ6SubBlock * j + l] / step), -32, 31) + 32);
    }
    for (int half = 0; half < 2; ++half) {  // 128 weights: four 32-weight runs share 64 low and 32 high bytes
      const int8_t* c = codes + 128 * half;
      uint8_t* ql = out.ql + 64 * half;
      uint8_t* qh = out.qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((c[l] & 0xF) | ((c[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((c[l + 32] & 0xF) | ((c[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) |
                                     ((c[l + 96] >> 4) << 6));
      }
    }
  }
}

void fake_quantize_row_q8_K(const float* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlSuperBlock; ++b, x += kGgmlSuperBlock, y += kGgmlSuperBlock) {
    float amax = 0, max = 0;
    for (int j = 0; j < kGgmlSuperBlock; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0) {
      std::fill(y, y + kGgmlSuperBlock, 0.0f);
      continue;
    }
    const float inv = -127.0f / max;
    const float d = 1 / inv;
    for (int j = 0; j < kGgmlSuperBlock; ++j) y[j] = static_cast<float>(std::min(127, round_to_int(inv * x[j]))) * d;
  }
}

}  // namespace qtune::numerics
