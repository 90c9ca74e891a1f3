// The 8da4w GEMM: int8 activation codes times packed int4 weights, int32 sums within each weight group,
// scaled per group and per token in f32. Portable C++ (the compiler vectorizes the int8 dot), and an
// AVX-512 VNNI path (vpdpbusd) when the build targets a CPU that has it and K is a multiple of 128.
#include <algorithm>
#include <vector>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define QTUNE_INT4_VNNI 1
#endif

#include "engine/numerics/intx_quant.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

// q, w: [n] int8 -> sum of products, exact in int32 for n <= 2^16 (|q * w| <= 128 * 8).
int32_t dot_i8(const int8_t* q, const int8_t* w, int64_t n) {
  int32_t acc = 0;
  for (int64_t k = 0; k < n; ++k) acc += static_cast<int32_t>(q[k]) * static_cast<int32_t>(w[k]);
  return acc;
}

#if defined(QTUNE_INT4_VNNI)
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

// One weight row m against every token, four tokens per pass over the row. Each step sums in int32
// (vpdpbusd); at the end of each group the int32 lanes are scaled by their group's f32 scale.
// sum_g s_g * sum_k (q_k - zp) w_k = sum_g s_g * sum_k u_k w_k - (128 + zp) * sum_g s_g * sum_k w_k.
void vnni_row(const uint8_t* w_row, const float* scale_row, int64_t k_in, int64_t group, const uint8_t* u,
              int64_t n_tokens, const float* xs, const int32_t* xz, float* y, int64_t m_out, int64_t m) {
  const __m512i nibble = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8), ones = _mm512_set1_epi8(1);
  // sum_g s_g * sum_k w_k, lane by lane as the dot products (vpdpbusd against ones), on the first pass.
  __m512 w_sum_f = _mm512_setzero_ps();
  __m512i w_sum_i = _mm512_setzero_si512();
  float weighted_w_sum = 0.0f;
  constexpr int64_t kTokenBlock = 4;
  for (int64_t n0 = 0; n0 < n_tokens; n0 += kTokenBlock) {
    const int64_t nb = std::min(kTokenBlock, n_tokens - n0);
    __m512 acc_f[kTokenBlock];
    __m512i acc_i[kTokenBlock];
    for (int64_t t = 0; t < kTokenBlock; ++t) {
      acc_f[t] = _mm512_setzero_ps();
      acc_i[t] = _mm512_setzero_si512();
    }
    for (int64_t k = 0; k < k_in; k += 128) {
      const __m512i packed = _mm512_loadu_si512(w_row + k / 2);
      const __m512i even = _mm512_sub_epi8(_mm512_and_si512(packed, nibble), eight);
      const __m512i odd = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble), eight);
      if (n0 == 0) w_sum_i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(w_sum_i, ones, even), ones, odd);
      for (int64_t t = 0; t < nb; ++t) {
        const uint8_t* ut = u + (n0 + t) * k_in + k;
        acc_i[t] = _mm512_dpbusd_epi32(acc_i[t], _mm512_loadu_si512(ut), even);
        acc_i[t] = _mm512_dpbusd_epi32(acc_i[t], _mm512_loadu_si512(ut + 64), odd);
      }
      if ((k + 128) % group != 0 && group > 128) continue;  // group 256: flush every other step
      const __m512 scale = step_scale(scale_row + k / group, group);
      if (n0 == 0) {
        w_sum_f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(w_sum_i), scale, w_sum_f);
        w_sum_i = _mm512_setzero_si512();
      }
      for (int64_t t = 0; t < nb; ++t) {
        acc_f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_i[t]), scale, acc_f[t]);
        acc_i[t] = _mm512_setzero_si512();
      }
    }
    if (n0 == 0) weighted_w_sum = _mm512_reduce_add_ps(w_sum_f);
    for (int64_t t = 0; t < nb; ++t) {
      const int64_t n = n0 + t;
      y[n * m_out + m] = (_mm512_reduce_add_ps(acc_f[t]) - static_cast<float>(128 + xz[n]) * weighted_w_sum) * xs[n];
    }
  }
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
  if (k_in % 128 == 0) {
    std::vector<uint8_t> u(static_cast<size_t>(n_tokens * k_in));
    vnni_activations(q, n_tokens, k_in, u.data());
    parallel_for(
        m_out, std::max<int64_t>(1, 65536 / std::max<int64_t>(k_in * n_tokens, 1)), [&](int64_t m0, int64_t m1) {
          for (int64_t m = m0; m < m1; ++m)
            vnni_row(wp + m * (k_in / 2), ws + m * groups, k_in, group, u.data(), n_tokens, xs, xz, y, m_out, m);
        });
    return;
  }
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
