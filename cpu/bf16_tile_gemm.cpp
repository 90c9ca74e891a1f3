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

void pack_a_rounded(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda) {
  const int64_t pairs = (cols + 1) / 2;
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = src + i * stride;
    for (int64_t p = 0; p < pairs; ++p) {
      const uint16_t odd = 2 * p + 1 < cols ? numerics::f32_to_bf16_bits(row[2 * p + 1]) : uint16_t{0};
      dst[i * lda + p] = pair_of(numerics::f32_to_bf16_bits(row[2 * p]), odd);
    }
  }
}

void pack_a_rounded_transposed(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                               int64_t lda) {
  for (int64_t p = 0; 2 * p < rows; ++p) {
    const float* even = src + 2 * p * stride;
    const float* odd = 2 * p + 1 < rows ? even + stride : nullptr;
    for (int64_t x = 0; x < cols; ++x)
      dst[x * lda + p] = pair_of(numerics::f32_to_bf16_bits(even[x]),
                                 odd != nullptr ? numerics::f32_to_bf16_bits(odd[x]) : uint16_t{0});
  }
}

void pack_b_rows(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst, int64_t ldb) {
  for (int64_t p = 0; 2 * p < k; ++p) {
    const bf16_t* even = src + 2 * p * stride;
    const bf16_t* odd = 2 * p + 1 < k ? even + stride : nullptr;
    for (int64_t j = 0; j < n; ++j)
      dst[p * ldb + j] = pair_of(bits_of(even[j]), odd != nullptr ? bits_of(odd[j]) : uint16_t{0});
  }
}

void pack_b_transposed(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst, int64_t ldb) {
  const int64_t pairs = (k + 1) / 2;
  for (int64_t j = 0; j < n; ++j) {
    const bf16_t* row = src + j * stride;
    if (k % 2 == 0 && reinterpret_cast<uintptr_t>(row) % 4 == 0) {  // the pairs are the row's own words
      const pair_t* words = reinterpret_cast<const pair_t*>(row);
      for (int64_t p = 0; p < pairs; ++p) dst[p * ldb + j] = words[p];
      continue;
    }
    for (int64_t p = 0; p < pairs; ++p)
      dst[p * ldb + j] = pair_of(bits_of(row[2 * p]), 2 * p + 1 < k ? bits_of(row[2 * p + 1]) : uint16_t{0});
  }
}

}  // namespace qtune::cpu
