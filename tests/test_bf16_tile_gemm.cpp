// The bf16 tile products of attention (cpu/bf16_tile_gemm.h): the packers lay operands out as the
// header says, the scalar reference sums what it says, and the AVX512-BF16 kernel equals the reference
// bit for bit over shapes with every kind of tail.
#include <bit>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/bf16_tile_gemm.h"
#include "engine/numerics/bf16.h"
#include "engine/rng.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::cpu;

namespace {

std::vector<bf16_t> random_bf16(int64_t count, uint64_t seed, float lo = -2.0f, float hi = 2.0f) {
  Generator gen(seed);
  const std::vector<float> values = rand({count}, DType::f32, Device::cpu(), &gen, lo, hi).to_vector<float>();
  std::vector<bf16_t> out(count);
  for (int64_t i = 0; i < count; ++i) out[i].bits = numerics::f32_to_bf16_bits(values[i]);
  return out;
}

float value(const bf16_t& x) { return numerics::bf16_bits_to_f32(x.bits); }
uint16_t half(uint32_t pair, int i) { return static_cast<uint16_t>(pair >> (16 * i)); }

struct Product {
  int64_t m, n, k;
  std::vector<bf16_t> a, b;  // a: [m, k]; b: [k, n]
  std::vector<uint32_t> a_pairs, b_pairs;
  int64_t lda, ldb;
  Product(int64_t m_, int64_t n_, int64_t k_, uint64_t seed) : m(m_), n(n_), k(k_) {
    a = random_bf16(m * k, seed);
    b = random_bf16(k * n, seed + 1);
    lda = (k + 1) / 2 + 3;  // strides wider than the rows, as attention's scratch has
    ldb = n + 5;
    a_pairs.assign(m * lda, 0xDEADBEEFu);
    b_pairs.assign(((k + 1) / 2) * ldb, 0xDEADBEEFu);
    pack_a_rows(a.data(), k, m, k, a_pairs.data(), lda);
    pack_b_rows(b.data(), n, k, n, b_pairs.data(), ldb);
  }
  // The exact product of the bf16 values (f64 sums of exact products).
  double exact(int64_t i, int64_t j) const {
    double sum = 0;
    for (int64_t x = 0; x < k; ++x) sum += double{value(a[i * k + x])} * value(b[x * n + j]);
    return sum;
  }
};

}  // namespace

TEST_CASE("bf16 tile packers lay out pairs along k, the even element low, an odd k padded with zero") {
  const int64_t rows = 3, cols = 5;
  const std::vector<bf16_t> src = random_bf16(rows * cols, 1);
  std::vector<uint32_t> a(rows * 3), bt(3 * rows), br(2 * cols), at(cols * 2);
  pack_a_rows(src.data(), cols, rows, cols, a.data(), 3);
  pack_b_transposed(src.data(), cols, rows, cols, bt.data(), rows);  // B[x][j] = src[j][x]
  pack_b_rows(src.data(), cols, rows, cols, br.data(), cols);        // B[x][j] = src[x][j], k = rows
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t x = 0; x < cols; ++x) {
      CHECK(half(a[i * 3 + x / 2], x % 2) == src[i * cols + x].bits);
      CHECK(half(bt[(x / 2) * rows + i], x % 2) == src[i * cols + x].bits);
      CHECK(half(br[(i / 2) * cols + x], i % 2) == src[i * cols + x].bits);
    }
  for (int64_t i = 0; i < rows; ++i) CHECK(half(a[i * 3 + 2], 1) == 0);      // cols = 5: the sixth element
  for (int64_t x = 0; x < cols; ++x) CHECK(half(br[1 * cols + x], 1) == 0);  // rows = 3: the fourth row

  std::vector<float> f(rows * cols);
  for (int64_t e = 0; e < rows * cols; ++e) f[e] = value(src[e]) * 1.001f;  // not bf16 values: rounding shows
  std::vector<uint32_t> ar(rows * 3), art(cols * 2);
  pack_a_rounded(f.data(), cols, rows, cols, ar.data(), 3);
  pack_a_rounded_transposed(f.data(), cols, rows, cols, art.data(), 2);  // A[x][i] = bf16(f[i][x])
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t x = 0; x < cols; ++x) {
      CHECK(half(ar[i * 3 + x / 2], x % 2) == numerics::f32_to_bf16_bits(f[i * cols + x]));
      CHECK(half(art[x * 2 + i / 2], i % 2) == numerics::f32_to_bf16_bits(f[i * cols + x]));
    }
}

TEST_CASE("the vectorized packers equal their scalar references bit for bit") {
  if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    MESSAGE(
        "this CPU has no AVX512BW/VL: the packers run their references here, so this compares those with "
        "themselves");
  // f32 values that probe the rounding: ties to even both ways, NaNs (quieted), infinities, subnormals, values
  // that round up into the next binade or to infinity.
  const std::vector<float> specials = {std::bit_cast<float>(0x3F808000u),       std::bit_cast<float>(0x3F818000u),
                                       std::bit_cast<float>(0x7FC00001u),       std::bit_cast<float>(0x7F800001u),
                                       std::bit_cast<float>(0xFF812345u),       std::numeric_limits<float>::infinity(),
                                       -std::numeric_limits<float>::infinity(), std::bit_cast<float>(0x00000001u),
                                       std::bit_cast<float>(0x807FFFFFu),       std::bit_cast<float>(0x3FFFFFFFu),
                                       std::bit_cast<float>(0x7F7FFFFFu),       -0.0f};
  // Sizes below, at and past the 16-lane vectors and 16 x 16 blocks; odd counts get a zero partner.
  for (const auto& [rows, cols] : {std::tuple{1, 1}, std::tuple{3, 5}, std::tuple{16, 16}, std::tuple{17, 33},
                                   std::tuple{64, 64}, std::tuple{31, 2}, std::tuple{2, 31}, std::tuple{40, 64}}) {
    CAPTURE(rows);
    CAPTURE(cols);
    const int64_t stride = cols + 3, pairs_c = (cols + 1) / 2, pairs_r = (rows + 1) / 2;
    const std::vector<bf16_t> h = random_bf16(rows * stride, 40 + rows);
    Generator gen(50 + cols);
    std::vector<float> f = rand({rows * stride}, DType::f32, Device::cpu(), &gen, -3.0f, 3.0f).to_vector<float>();
    for (size_t e = 0; e < specials.size() && e < f.size(); ++e) f[(e * 7) % f.size()] = specials[e];
    auto same = [](auto pack, auto reference, int64_t size) {
      std::vector<uint32_t> fast(size, 0xDEADBEEFu), slow(size, 0xDEADBEEFu);
      pack(fast.data());
      reference(slow.data());
      return fast == slow;  // the words between rows untouched by both
    };
    const int64_t lda_c = pairs_c + 2, lda_r = pairs_r + 2, ld_c = cols + 2, ld_r = rows + 2;
    CHECK(same([&](uint32_t* d) { pack_a_rounded(f.data(), stride, rows, cols, d, lda_c); },
               [&](uint32_t* d) { pack_a_rounded_reference(f.data(), stride, rows, cols, d, lda_c); }, rows * lda_c));
    CHECK(same([&](uint32_t* d) { pack_a_rounded_transposed(f.data(), stride, rows, cols, d, lda_r); },
               [&](uint32_t* d) { pack_a_rounded_transposed_reference(f.data(), stride, rows, cols, d, lda_r); },
               cols * lda_r));
    CHECK(same([&](uint32_t* d) { pack_b_rows(h.data(), stride, rows, cols, d, ld_c); },
               [&](uint32_t* d) { pack_b_rows_reference(h.data(), stride, rows, cols, d, ld_c); }, pairs_r * ld_c));
    // Rows starting at odd elements: the pairs are not aligned words of the source.
    for (const int64_t offset : {0, 1}) {
      CHECK(same(
          [&](uint32_t* d) { pack_b_transposed(h.data() + offset, stride, rows, cols - offset, d, ld_r); },
          [&](uint32_t* d) { pack_b_transposed_reference(h.data() + offset, stride, rows, cols - offset, d, ld_r); },
          ((cols - offset + 1) / 2) * ld_r));
    }
  }
}

TEST_CASE("the bf16 tile reference sums the exact products in f32") {
  for (const auto& [m, n, k] : {std::tuple{5, 7, 9}, std::tuple{64, 64, 64}, std::tuple{1, 1, 1}}) {
    CAPTURE(m);
    CAPTURE(k);
    const Product p(m, n, k, 10 + m);
    std::vector<float> c(m * n, 1.0f);
    bf16_tile_gemm_reference(m, n, (k + 1) / 2, p.a_pairs.data(), p.lda, p.b_pairs.data(), p.ldb, 0.5f, true, c.data(),
                             n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double want = 1.0 + 0.5 * p.exact(i, j);
        // k f32 roundings of sums of at most k * 4 in magnitude.
        CHECK(std::fabs(c[i * n + j] - want) <= 4.0 * k * k * 6e-8 + 1e-6);
      }
  }
}

TEST_CASE("the AVX512-BF16 tile kernel equals the reference bit for bit") {
  if (!__builtin_cpu_supports("avx512bf16")) {
    MESSAGE("SKIPPED: this CPU has no AVX512-BF16; attention's bf16 tiles take the f32 path here");
    return;
  }
  const char* found = std::getenv("QTUNE_GEMM_WIDEN");
  const std::string outer = found != nullptr ? found : "";
  ::setenv("QTUNE_GEMM_WIDEN", "1", 1);
  CHECK_FALSE(bf16_tile_gemm_native());
  ::setenv("QTUNE_GEMM_WIDEN", "0", 1);
  CHECK(bf16_tile_gemm_native());
  ::unsetenv("QTUNE_GEMM_WIDEN");
  CHECK(bf16_tile_gemm_native());
  if (found != nullptr) ::setenv("QTUNE_GEMM_WIDEN", outer.c_str(), 1);
  // Rows past the 4-row blocks, columns past the 16-lane vectors and the 64-column blocks, odd k.
  for (const auto& [m, n, k] : {std::tuple{64, 64, 64}, std::tuple{5, 17, 9}, std::tuple{3, 130, 64},
                                std::tuple{70, 64, 128}, std::tuple{1, 1, 1}, std::tuple{9, 48, 2}}) {
    for (const bool accumulate : {false, true}) {
      CAPTURE(m);
      CAPTURE(n);
      CAPTURE(k);
      CAPTURE(accumulate);
      const Product p(m, n, k, 20 + n);
      const int64_t ldc = n + 2;
      std::vector<float> fast(m * ldc, 0.25f), slow(m * ldc, 0.25f);
      bf16_tile_gemm(m, n, (k + 1) / 2, p.a_pairs.data(), p.lda, p.b_pairs.data(), p.ldb, 0.125f, accumulate,
                     fast.data(), ldc);
      bf16_tile_gemm_reference(m, n, (k + 1) / 2, p.a_pairs.data(), p.lda, p.b_pairs.data(), p.ldb, 0.125f, accumulate,
                               slow.data(), ldc);
      CHECK(fast == slow);  // the padding columns between rows untouched by both
    }
  }
}
