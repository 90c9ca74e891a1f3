// The 8da4w GEMM: int8 activation codes times packed int4 weights, int32 sums within each weight group,
// scaled per group and per token in f32. Portable C++ (the compiler vectorizes the int8 dot), and an
// AVX-512 VNNI path (vpdpbusd) when the build targets a CPU that has it and K is a multiple of 128.
#include <algorithm>
#include <cstdlib>
#include <vector>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define QTUNE_INT4_VNNI 1
#endif

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "engine/numerics/intx_quant.h"

namespace qtune::cpu {
namespace {

// q, w: [n] int8 -> sum of products, exact in int32 for n <= 2^16 (|q * w| <= 128 * 8).
int32_t dot_i8(const int8_t* q, const int8_t* w, int64_t n) {
  int32_t acc = 0;
  for (int64_t k = 0; k < n; ++k) acc += static_cast<int32_t>(q[k]) * static_cast<int32_t>(w[k]);
  return acc;
}

#if defined(QTUNE_INT4_VNNI)
// QTUNE_INT4_PORTABLE=1 runs the portable kernel even where the VNNI one is built (the tests compare them).
bool portable_forced() {
  const char* env = std::getenv("QTUNE_INT4_PORTABLE");
  return env != nullptr && env[0] == '1';
}

// vpdpbusd multiplies unsigned by signed bytes: activations go in as u = q + 128. A step covers 128
// elements (four blocks of 32, 64 packed bytes): their low nibbles (the even elements) go against the
// step's first 64 activation bytes, the high nibbles (odd elements) against the next 64, so within each
// step the activations are reordered to [evens of blocks 0..3, odds of blocks 0..3]. Either way, int32
// lane 4b..4b+3 sums block b of the step.
void vnni_activations(const int8_t* q, int64_t n_tokens, int64_t k_in, uint8_t* u) {
  parallel_for(n_tokens, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t i = n0 * k_in; i < n1 * k_in; i += 128)
      for (int64_t b = 0; b < 4; ++b)
        for (int64_t j = 0; j < 16; ++j) {
          u[i + 16 * b + j] = static_cast<uint8_t>(q[i + 32 * b + 2 * j] + 128);
          u[i + 64 + 16 * b + j] = static_cast<uint8_t>(q[i + 32 * b + 2 * j + 1] + 128);
        }
  });
}

// The f32 scale of each int32 lane of a step whose first group's scale is s[0].
inline __m512 step_scale(const float* s, int64_t group) {
  if (group >= 128) return _mm512_set1_ps(s[0]);
  if (group == 64) return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(s[0]), _mm512_set1_ps(s[1]));
  __m512 v = _mm512_set1_ps(s[0]);
  v = _mm512_mask_blend_ps(0x00f0, v, _mm512_set1_ps(s[1]));
  v = _mm512_mask_blend_ps(0x0f00, v, _mm512_set1_ps(s[2]));
  return _mm512_mask_blend_ps(0xf000, v, _mm512_set1_ps(s[3]));
}

// sum_g s_g * sum_{k in g} w_k of one weight row, lane by lane as the dot products sum them (vpdpbusd
// against ones), so that subtracting (128 + zp) times it cancels the +128 of the activations exactly.
float weighted_weight_sum(const uint8_t* w_row, const float* scale_row, int64_t k_in, int64_t group) {
  const __m512i nibble = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8), ones = _mm512_set1_epi8(1);
  __m512 sum_f = _mm512_setzero_ps();
  __m512i sum_i = _mm512_setzero_si512();
  for (int64_t k = 0; k < k_in; k += 128) {
    const __m512i packed = _mm512_loadu_si512(w_row + k / 2);
    const __m512i even = _mm512_sub_epi8(_mm512_and_si512(packed, nibble), eight);
    const __m512i odd = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble), eight);
    sum_i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sum_i, ones, even), ones, odd);
    if ((k + 128) % group != 0 && group > 128) continue;  // group 256: flush every other step
    sum_f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_i), step_scale(scale_row + k / group, group), sum_f);
    sum_i = _mm512_setzero_si512();
  }
  return _mm512_reduce_add_ps(sum_f);
}

// R weight rows m.. against NB tokens n0.., all in registers (R = 2, NB = 4: 25 of the 32 zmm): each
// unpacked weight step serves NB tokens and each activation load R rows. Each step sums in int32
// (vpdpbusd); at the end of each group the int32 lanes are scaled by their group's f32 scale.
// sum_g s_g * sum_k (q_k - zp) w_k = sum_g s_g * sum_k u_k w_k - (128 + zp) * w_sum.
template <int R, int NB>
void vnni_tile(const uint8_t* w, const float* ws, int64_t k_in, int64_t group, const uint8_t* u, const float* xs,
               const int32_t* xz, const float* w_sum, float* y, int64_t m_out, int64_t m, int64_t n0) {
  const __m512i nibble = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
  const int64_t groups = k_in / group;
  __m512 acc_f[R][NB];
  __m512i acc_i[R][NB];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NB; ++t) {
      acc_f[r][t] = _mm512_setzero_ps();
      acc_i[r][t] = _mm512_setzero_si512();
    }
  for (int64_t k = 0; k < k_in; k += 128) {
    __m512i even[R], odd[R];
    for (int r = 0; r < R; ++r) {
      const __m512i packed = _mm512_loadu_si512(w + (m + r) * (k_in / 2) + k / 2);
      even[r] = _mm512_sub_epi8(_mm512_and_si512(packed, nibble), eight);
      odd[r] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble), eight);
    }
    for (int t = 0; t < NB; ++t) {
      const uint8_t* ut = u + (n0 + t) * k_in + k;
      const __m512i lo = _mm512_loadu_si512(ut), hi = _mm512_loadu_si512(ut + 64);
      for (int r = 0; r < R; ++r)
        acc_i[r][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc_i[r][t], lo, even[r]), hi, odd[r]);
    }
    if ((k + 128) % group != 0 && group > 128) continue;  // group 256: flush every other step
    for (int r = 0; r < R; ++r) {
      const __m512 scale = step_scale(ws + (m + r) * groups + k / group, group);
      for (int t = 0; t < NB; ++t) {
        acc_f[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_i[r][t]), scale, acc_f[r][t]);
        acc_i[r][t] = _mm512_setzero_si512();
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NB; ++t) {
      const int64_t n = n0 + t;
      y[n * m_out + m + r] = (_mm512_reduce_add_ps(acc_f[r][t]) - static_cast<float>(128 + xz[n]) * w_sum[r]) * xs[n];
    }
}

template <int R>
void vnni_tile_tokens(int64_t nb, const uint8_t* w, const float* ws, int64_t k_in, int64_t group, const uint8_t* u,
                      const float* xs, const int32_t* xz, const float* w_sum, float* y, int64_t m_out, int64_t m,
                      int64_t n0) {
  switch (nb) {
    case 1:
      return vnni_tile<R, 1>(w, ws, k_in, group, u, xs, xz, w_sum, y, m_out, m, n0);
    case 2:
      return vnni_tile<R, 2>(w, ws, k_in, group, u, xs, xz, w_sum, y, m_out, m, n0);
    case 3:
      return vnni_tile<R, 3>(w, ws, k_in, group, u, xs, xz, w_sum, y, m_out, m, n0);
    default:
      return vnni_tile<R, 4>(w, ws, k_in, group, u, xs, xz, w_sum, y, m_out, m, n0);
  }
}

// Rows in tiles of kRowTile (64 KiB to 172 KiB of packed weights at K = 4096 to 11008: they stay in L2 while
// every block of four tokens passes over them); threads split the tiles, i.e. the output axis.
void vnni_linear(const int8_t* q, const float* xs, const int32_t* xz, const uint8_t* w, const float* ws, float* y,
                 int64_t n_tokens, int64_t k_in, int64_t m_out, int64_t group) {
  constexpr int64_t kRowTile = 32, kTokenBlock = 4;
  std::vector<uint8_t> u(static_cast<size_t>(n_tokens * k_in));
  vnni_activations(q, n_tokens, k_in, u.data());
  const int64_t tiles = (m_out + kRowTile - 1) / kRowTile, groups = k_in / group;
  // Threads only when each gets at least ~2 M multiply-adds: below that the fork costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 21) / (kRowTile * k_in * n_tokens));
  parallel_for(tiles, grain, [&](int64_t t0, int64_t t1) {
    float w_sum[kRowTile];
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t m0 = tile * kRowTile, m1 = std::min(m_out, m0 + kRowTile);
      for (int64_t m = m0; m < m1; ++m)
        w_sum[m - m0] = weighted_weight_sum(w + m * (k_in / 2), ws + m * groups, k_in, group);
      for (int64_t n0 = 0; n0 < n_tokens; n0 += kTokenBlock) {
        const int64_t nb = std::min(kTokenBlock, n_tokens - n0);
        int64_t m = m0;
        for (; m + 2 <= m1; m += 2)
          vnni_tile_tokens<2>(nb, w, ws, k_in, group, u.data(), xs, xz, w_sum + (m - m0), y, m_out, m, n0);
        if (m < m1) vnni_tile_tokens<1>(nb, w, ws, k_in, group, u.data(), xs, xz, w_sum + (m - m0), y, m_out, m, n0);
      }
    }
  });
}
#endif

}  // namespace

void CpuBackend::int8_int4_linear(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp,
                                  const Tensor& w_packed, const Tensor& w_scale, const Tensor& out) {
  const int64_t group = check_int8_int4_linear_args(codes, x_scale, x_zp, w_packed, w_scale, out);
  const int64_t n_tokens = codes.size(0), k_in = codes.size(1), m_out = w_packed.size(0), groups = k_in / group;
  const int8_t* q = ptr<int8_t>(codes);
  const float* xs = ptr<float>(x_scale);
  const int32_t* xz = ptr<int32_t>(x_zp);
  const uint8_t* wp = ptr<uint8_t>(w_packed);
  const float* ws = ptr<float>(w_scale);
  float* y = ptr<float>(out);
#if defined(QTUNE_INT4_VNNI)
  if (k_in % 128 == 0 && !portable_forced()) return vnni_linear(q, xs, xz, wp, ws, y, n_tokens, k_in, m_out, group);
#endif
  parallel_for(m_out, std::max<int64_t>(1, 65536 / std::max<int64_t>(k_in * n_tokens, 1)), [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> w(static_cast<size_t>(k_in));
    std::vector<int32_t> w_sum(static_cast<size_t>(groups));
    for (int64_t m = m0; m < m1; ++m) {
      // Unpack the row once for every token; sum(q - zp) * w = sum(q * w) - zp * sum(w).
      for (int64_t k = 0; k < k_in / 2; ++k) {
        const uint8_t b = wp[m * (k_in / 2) + k];
        w[2 * k] = static_cast<int8_t>(numerics::low_nibble(b) - 8);
        w[2 * k + 1] = static_cast<int8_t>(numerics::high_nibble(b) - 8);
      }
      for (int64_t g = 0; g < groups; ++g) {
        int32_t s = 0;
        for (int64_t k = 0; k < group; ++k) s += w[g * group + k];
        w_sum[g] = s;
      }
      const float* row_scale = ws + m * groups;
      for (int64_t n = 0; n < n_tokens; ++n) {
        const int8_t* qn = q + n * k_in;
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          const int32_t dot = dot_i8(qn + g * group, w.data() + g * group, group) - xz[n] * w_sum[g];
          acc += static_cast<float>(dot) * row_scale[g];
        }
        y[n * m_out + m] = acc * xs[n];
      }
    }
  });
}

}  // namespace qtune::cpu
