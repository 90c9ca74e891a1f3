#include "cpu/bf16_tile_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/check.h"
#include "engine/numerics/bf16.h"

namespace qtune::cpu {
namespace {

// 16-bit elements read and written as the 32-bit pairs they form.
using pair_t = uint32_t __attribute__((may_alias));

uint32_t pair_of(uint16_t even, uint16_t odd) { return uint32_t{even} | (uint32_t{odd} << 16); }
uint16_t bits_of(const bf16_t& x) { return x.bits; }

float flushed(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
float half_value(uint32_t pair, int half) {
  return flushed(numerics::bf16_bits_to_f32(static_cast<uint16_t>(pair >> (16 * half))));
}

// Rows MR x vectors NV of 16 columns: C[m0 .. m0+MR, n0 .. n0+16 NV], the last vector masked.
template <int MR, int NV>
__attribute__((target("avx512f,avx512bf16"))) void micro_tile(int64_t k2, const pair_t* a, int64_t lda, const pair_t* b,
                                                              int64_t ldb, __mmask16 last, float alpha, bool accumulate,
                                                              float* c, int64_t ldc) {
  __m512 acc[MR][NV];
  // Fully unrolled, so that the accumulators live in registers (GCC otherwise stores them every step).
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k2; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mask = v == NV - 1 ? last : __mmask16(0xFFFF);
      bv[v] = (__m512bh)_mm512_maskz_loadu_epi32(mask, b + p * ldb + 16 * v);
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda + p]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mask = v == NV - 1 ? last : __mmask16(0xFFFF);
      float* dst = c + r * ldc + 16 * v;
      __m512 out = _mm512_mul_ps(scale, acc[r][v]);
      if (accumulate) out = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), out);
      _mm512_mask_storeu_ps(dst, mask, out);
    }
}

using MicroTile = void (*)(int64_t, const pair_t*, int64_t, const pair_t*, int64_t, __mmask16, float, bool, float*,
                           int64_t);

template <int MR>
constexpr MicroTile micro_for(int nv) {
  switch (nv) {
    case 1:
      return &micro_tile<MR, 1>;
    case 2:
      return &micro_tile<MR, 2>;
    case 3:
      return &micro_tile<MR, 3>;
    default:
      return &micro_tile<MR, 4>;
  }
}

MicroTile micro_for(int mr, int nv) {
  switch (mr) {
    case 1:
      return micro_for<1>(nv);
    case 2:
      return micro_for<2>(nv);
    case 3:
      return micro_for<3>(nv);
    default:
      return micro_for<4>(nv);
  }
}

bool env_forces_widening() {
  const char* v = std::getenv("QTUNE_GEMM_WIDEN");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

}  // namespace

bool bf16_tile_gemm_native() {
  static const bool has_instruction = __builtin_cpu_supports("avx512bf16");
  return has_instruction && !env_forces_widening();
}

void bf16_tile_gemm(int64_t m, int64_t n, int64_t k2, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb,
                    float alpha, bool accumulate, float* c, int64_t ldc) {
  QTUNE_CHECK(__builtin_cpu_supports("avx512bf16"), "bf16_tile_gemm: this CPU has no AVX512-BF16");
  constexpr int64_t kRows = 4, kCols = 64;
  for (int64_t n0 = 0; n0 < n; n0 += kCols) {
    const int64_t width = std::min(kCols, n - n0);
    const int nv = static_cast<int>((width + 15) / 16);
    const int tail = static_cast<int>(width - 16 * (nv - 1));
    const __mmask16 last = static_cast<__mmask16>(tail == 16 ? 0xFFFF : (1u << tail) - 1);
    for (int64_t m0 = 0; m0 < m; m0 += kRows) {
      const int mr = static_cast<int>(std::min(kRows, m - m0));
      micro_for(mr, nv)(k2, a + m0 * lda, lda, b + n0, ldb, last, alpha, accumulate, c + m0 * ldc + n0, ldc);
    }
  }
}

void bf16_tile_gemm_reference(int64_t m, int64_t n, int64_t k2, const uint32_t* a, int64_t lda, const uint32_t* b,
                              int64_t ldb, float alpha, bool accumulate, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < k2; ++p) {
        const uint32_t x = a[i * lda + p], y = b[p * ldb + j];
        // One fused multiply-add per member, the odd one first, as the instruction does (a product of two bf16
        // values is exact in f32 unless it underflows, and then only the fused form rounds as it does).
        sum = flushed(std::fma(half_value(x, 1), half_value(y, 1), sum));
        sum = flushed(std::fma(half_value(x, 0), half_value(y, 0), sum));
      }
      float& out = c[i * ldc + j];
      out = accumulate ? out + alpha * sum : alpha * sum;
    }
}

void pack_a_rows(const bf16_t* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda) {
  const int64_t pairs = (cols + 1) / 2;
  for (int64_t i = 0; i < rows; ++i) {
    const bf16_t* row = src + i * stride;
    if (cols % 2 == 0) {  // the pairs are the row's own words
      std::memcpy(dst + i * lda, row, cols * sizeof(bf16_t));
      continue;
    }
    for (int64_t p = 0; p < pairs; ++p)
      dst[i * lda + p] = pair_of(bits_of(row[2 * p]), 2 * p + 1 < cols ? bits_of(row[2 * p + 1]) : uint16_t{0});
  }
}

void pack_a_rounded_reference(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                              int64_t lda) {
  const int64_t pairs = (cols + 1) / 2;
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = src + i * stride;
    for (int64_t p = 0; p < pairs; ++p) {
      const uint16_t odd = 2 * p + 1 < cols ? numerics::f32_to_bf16_bits(row[2 * p + 1]) : uint16_t{0};
      dst[i * lda + p] = pair_of(numerics::f32_to_bf16_bits(row[2 * p]), odd);
    }
  }
}

void pack_a_rounded_transposed_reference(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                                         int64_t lda) {
  for (int64_t p = 0; 2 * p < rows; ++p) {
    const float* even = src + 2 * p * stride;
    const float* odd = 2 * p + 1 < rows ? even + stride : nullptr;
    for (int64_t x = 0; x < cols; ++x)
      dst[x * lda + p] = pair_of(numerics::f32_to_bf16_bits(even[x]),
                                 odd != nullptr ? numerics::f32_to_bf16_bits(odd[x]) : uint16_t{0});
  }
}

void pack_b_rows_reference(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst, int64_t ldb) {
  for (int64_t p = 0; 2 * p < k; ++p) {
    const bf16_t* even = src + 2 * p * stride;
    const bf16_t* odd = 2 * p + 1 < k ? even + stride : nullptr;
    for (int64_t j = 0; j < n; ++j)
      dst[p * ldb + j] = pair_of(bits_of(even[j]), odd != nullptr ? bits_of(odd[j]) : uint16_t{0});
  }
}

void pack_b_transposed_reference(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst, int64_t ldb) {
  const int64_t pairs = (k + 1) / 2;
  for (int64_t j = 0; j < n; ++j) {
    const bf16_t* row = src + j * stride;
    for (int64_t p = 0; p < pairs; ++p)
      dst[p * ldb + j] = pair_of(bits_of(row[2 * p]), 2 * p + 1 < k ? bits_of(row[2 * p + 1]) : uint16_t{0});
  }
}

namespace {

// The packers below need AVX512BW/VL, which every CPU with the tile kernel's AVX512-BF16 has; they take one
// vector of 16 pairs at a time and equal their references bit for bit: same rounding, same zero padding.
#define QTUNE_PACK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

QTUNE_PACK_TARGET __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1);
}

// numerics::f32_to_bf16_bits of 16 lanes, each in the low half of its 32-bit lane: nearest even, NaNs quieted.
QTUNE_PACK_TARGET __m512i bf16_bits16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  const __m512i quieted = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
  return _mm512_srli_epi32(_mm512_mask_mov_epi32(rounded, nan, quieted), 16);
}

// 16 pairs from two rows of 16-bit elements: (even[j], odd[j]), j < count; lanes past count are 0.
QTUNE_PACK_TARGET __m512i interleave16(const uint16_t* even, const uint16_t* odd, int64_t count) {
  const __mmask16 lanes = first_lanes(count);
  const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(lanes, even));
  if (odd == nullptr) return lo;
  const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(lanes, odd));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// r[i] holds words (i, 0..15) of a 16 x 16 block; afterwards r[c] holds words (0..15, c).
QTUNE_PACK_TARGET void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: rows 2i and 2i+1 interleaved
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane L: u[4i+c] holds column 4L+c of rows 4i..4i+3
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {  // column 4L+c gathers lane L of u[c], u[4+c], u[8+c], u[12+c]
    const __m512i even_lanes_a = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
    const __m512i odd_lanes_a = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
    const __m512i even_lanes_b = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i odd_lanes_b = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_i32x4(even_lanes_a, even_lanes_b, 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(even_lanes_a, even_lanes_b, 0xDD);
    r[4 + c] = _mm512_shuffle_i32x4(odd_lanes_a, odd_lanes_b, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(odd_lanes_a, odd_lanes_b, 0xDD);
  }
}

// Stores the first `lines` of a transposed block, `count` words each, lines `ld` words apart.
QTUNE_PACK_TARGET void store_lines(const __m512i r[16], int64_t lines, int64_t count, uint32_t* dst, int64_t ld) {
  const __mmask16 lanes = first_lanes(count);
  for (int64_t c = 0; c < lines; ++c) _mm512_mask_storeu_epi32(dst + c * ld, lanes, r[c]);
}

QTUNE_PACK_TARGET void pack_a_rounded_fast(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                                           int64_t lda) {
  const int64_t padded = 2 * ((cols + 1) / 2);  // an odd row gets its zero partner
  for (int64_t i = 0; i < rows; ++i) {
    auto* out = reinterpret_cast<uint16_t*>(dst + i * lda);
    for (int64_t x = 0; x < padded; x += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(first_lanes(cols - x), src + i * stride + x);
      _mm256_mask_storeu_epi16(out + x, first_lanes(padded - x), _mm512_cvtepi32_epi16(bf16_bits16(v)));
    }
  }
}

QTUNE_PACK_TARGET void pack_a_rounded_transposed_fast(const float* src, int64_t stride, int64_t rows, int64_t cols,
                                                      uint32_t* dst, int64_t lda) {
  const int64_t pairs = (rows + 1) / 2;
  for (int64_t p0 = 0; p0 < pairs; p0 += 16)
    for (int64_t x0 = 0; x0 < cols; x0 += 16) {
      const __mmask16 lanes = first_lanes(cols - x0);
      __m512i r[16];
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t row = 2 * (p0 + p);
        const __m512i even =
            row < rows ? bf16_bits16(_mm512_maskz_loadu_ps(lanes, src + row * stride + x0)) : _mm512_setzero_si512();
        const __m512i odd = row + 1 < rows ? bf16_bits16(_mm512_maskz_loadu_ps(lanes, src + (row + 1) * stride + x0))
                                           : _mm512_setzero_si512();
        r[p] = _mm512_or_si512(even, _mm512_slli_epi32(odd, 16));
      }
      transpose16(r);
      store_lines(r, std::min<int64_t>(16, cols - x0), pairs - p0, dst + x0 * lda + p0, lda);
    }
}

QTUNE_PACK_TARGET void pack_b_rows_fast(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst,
                                        int64_t ldb) {
  for (int64_t p = 0; 2 * p < k; ++p) {
    const auto* even = reinterpret_cast<const uint16_t*>(src + 2 * p * stride);
    const uint16_t* odd = 2 * p + 1 < k ? even + stride : nullptr;
    for (int64_t j = 0; j < n; j += 16)
      _mm512_mask_storeu_epi32(dst + p * ldb + j, first_lanes(n - j),
                               interleave16(even + j, odd == nullptr ? nullptr : odd + j, n - j));
  }
}

QTUNE_PACK_TARGET void pack_b_transposed_fast(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst,
                                              int64_t ldb) {
  const int64_t pairs = (k + 1) / 2;
  for (int64_t j0 = 0; j0 < n; j0 += 16)
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      // 16-bit lanes past k read as 0: an odd k's last pair gets its zero partner.
      const __mmask32 elements =
          k - 2 * p0 >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((uint64_t{1} << (k - 2 * p0)) - 1);
      __m512i r[16];
      for (int64_t j = 0; j < 16; ++j)
        r[j] =
            j0 + j < n ? _mm512_maskz_loadu_epi16(elements, src + (j0 + j) * stride + 2 * p0) : _mm512_setzero_si512();
      transpose16(r);
      store_lines(r, std::min<int64_t>(16, pairs - p0), n - j0, dst + p0 * ldb + j0, ldb);
    }
}

#undef QTUNE_PACK_TARGET

bool fast_packing() {
  static const bool has = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return has;
}

}  // namespace

void pack_a_rounded(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda) {
  if (fast_packing()) return pack_a_rounded_fast(src, stride, rows, cols, dst, lda);
  pack_a_rounded_reference(src, stride, rows, cols, dst, lda);
}

void pack_a_rounded_transposed(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                               int64_t lda) {
  if (fast_packing()) return pack_a_rounded_transposed_fast(src, stride, rows, cols, dst, lda);
  pack_a_rounded_transposed_reference(src, stride, rows, cols, dst, lda);
}

void pack_b_rows(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst, int64_t ldb) {
  if (fast_packing()) return pack_b_rows_fast(src, stride, k, n, dst, ldb);
  pack_b_rows_reference(src, stride, k, n, dst, ldb);
}

void pack_b_transposed(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst, int64_t ldb) {
  if (fast_packing()) return pack_b_transposed_fast(src, stride, n, k, dst, ldb);
  pack_b_transposed_reference(src, stride, n, k, dst, ldb);
}

}  // namespace qtune::cpu
