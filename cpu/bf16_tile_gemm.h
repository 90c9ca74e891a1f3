#pragma once
// Small bf16 products with f32 sums on the CPU's bf16 dot-product instruction (AVX512-BF16's vdpbf16ps),
// for attention's tiles: C = alpha * A B or C += alpha * A B, with A [m, k] and B [k, n] in bf16 and C in f32
// (docs/numerics.md §6, "bf16 tile products"). The instruction multiplies pairs of neighbours along k, so both
// operands travel as 32-bit pairs:
//   A: row i holds the pairs (A[i][2p], A[i][2p+1]), p = 0 .. k2-1, rows `lda` pairs apart;
//   B: pair row p holds the pairs (B[2p][j], B[2p+1][j]), j = 0 .. n-1, pair rows `ldb` pairs apart.
// The even element sits in the low 16 bits. An odd k is padded with a zero element. Every sum is
// fma(a2, b2, fma(a3, b3, fma(a0, b0, fma(a1, b1, 0)))) ...: the odd member of each pair first, each step
// one fused multiply-add rounded to nearest even, subnormal inputs and results flushed to zero. That is
// what the instruction computes, and what bf16_tile_gemm_reference repeats.
#include <cstdint>

#include "engine/numerics/element.h"

namespace qtune::cpu {

// Whether bf16_tile_gemm runs on vdpbf16ps here: the CPU has AVX512-BF16 and QTUNE_GEMM_WIDEN is unset
// (widening then also keeps attention's tiles in f32).
bool bf16_tile_gemm_native();

// c: [m, n] f32, rows ldc apart. Needs bf16_tile_gemm_native().
void bf16_tile_gemm(int64_t m, int64_t n, int64_t k2, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb,
                    float alpha, bool accumulate, float* c, int64_t ldc);
// The same sums one element at a time, bit for bit, on any CPU.
void bf16_tile_gemm_reference(int64_t m, int64_t n, int64_t k2, const uint32_t* a, int64_t lda, const uint32_t* b,
                              int64_t ldb, float alpha, bool accumulate, float* c, int64_t ldc);

// Packing. src rows are `stride` elements apart; dst pairs as above. Each packer but the first has a scalar
// reference, which it equals bit for bit and which it runs on a CPU without AVX512BW/VL.
// A from bf16 rows: A[i][x] = src[i][x] (rows x cols).
void pack_a_rows(const bf16_t* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda);
// A from f32 rows, rounded to bf16: A[i][x] = bf16(src[i][x]) (rows x cols).
void pack_a_rounded(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda);
void pack_a_rounded_reference(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst, int64_t lda);
// A from f32 rows, transposed and rounded: A[x][i] = bf16(src[i][x]) for src rows x cols.
void pack_a_rounded_transposed(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                               int64_t lda);
void pack_a_rounded_transposed_reference(const float* src, int64_t stride, int64_t rows, int64_t cols, uint32_t* dst,
                                         int64_t lda);
// B from bf16 rows indexed by k: B[x][j] = src[x][j] for src k x n.
void pack_b_rows(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst, int64_t ldb);
void pack_b_rows_reference(const bf16_t* src, int64_t stride, int64_t k, int64_t n, uint32_t* dst, int64_t ldb);
// B from bf16 rows indexed by n: B[x][j] = src[j][x] for src n x k (a product with src's transpose).
void pack_b_transposed(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst, int64_t ldb);
void pack_b_transposed_reference(const bf16_t* src, int64_t stride, int64_t n, int64_t k, uint32_t* dst, int64_t ldb);

}  // namespace qtune::cpu
