// llama.cpp's quantizers for the types of a Q4_K_M file (docs/numerics.md §9): qtune's Q4_K, Q5_K, Q6_K and Q5_0
// encoders give byte for byte the blocks ggml's own quantizer gives the same f32 rows (golden from
// tools/goldens/gen_gguf_kquant_encode.py, which calls llama.cpp's libggml-base), and the blocks decode to values
// within each format's step of the input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/numerics/ggml_blocks.h"
#include "engine/numerics/ggml_k_quantize.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

#include <nlohmann/json.hpp>

using namespace qtune;

namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

struct Golden {
  int64_t rows = 0, n = 0;
  std::vector<float> x;
  nlohmann::json json;
};

const Golden& golden() {
  static const Golden g = [] {
    Golden out;
    out.json = nlohmann::json::parse(testing::read_bytes(std::string(QTUNE_GOLDEN_DIR) + "/gguf/kquant_encode.json"));
    out.rows = out.json["rows"].get<int64_t>();
    out.n = out.json["n_per_row"].get<int64_t>();
    const std::vector<uint8_t> bytes = from_hex(out.json["input_f32_le"].get<std::string>());
    out.x.resize(bytes.size() / sizeof(float));
    std::memcpy(out.x.data(), bytes.data(), bytes.size());  // little-endian, as x86 and ARM hosts are
    REQUIRE(static_cast<int64_t>(out.x.size()) == out.rows * out.n);
    return out;
  }();
  return g;
}

// Encodes every golden row with `encode` into blocks of `Block`, checks the bytes against the golden ones (naming
// the first differing block), and returns the decoded values.
template <class Block>
std::vector<float> check_encoder(const char* name, int64_t block_elements,
                                 void (*encode)(const float*, Block*, int64_t), void (*decode)(const Block&, float*)) {
  const Golden& g = golden();
  const std::vector<uint8_t> want = from_hex(g.json[name].get<std::string>());
  const int64_t blocks = g.rows * g.n / block_elements;
  REQUIRE(want.size() == static_cast<size_t>(blocks) * sizeof(Block));
  std::vector<Block> got(static_cast<size_t>(blocks));
  for (int64_t r = 0; r < g.rows; ++r) encode(g.x.data() + r * g.n, got.data() + r * g.n / block_elements, g.n);
  for (int64_t b = 0; b < blocks; ++b) {
    CAPTURE(b);
    CHECK_MESSAGE(std::memcmp(&got[static_cast<size_t>(b)], want.data() + b * sizeof(Block), sizeof(Block)) == 0, name,
                  " block ", b, " (row ", b * block_elements / g.n, ") differs from ggml's");
  }
  std::vector<float> values(g.x.size());
  for (int64_t b = 0; b < blocks; ++b) decode(got[static_cast<size_t>(b)], values.data() + b * block_elements);
  return values;
}

// The largest |decoded - x| of each row, relative to the row's largest |x|; rows of values near the f16 subnormals
// are left out (their f16 scales lose bits: the byte comparison covers them).
void check_close(const std::vector<float>& values, double bound) {
  const Golden& g = golden();
  for (int64_t r = 0; r < g.rows; ++r) {
    double amax = 0, err = 0;
    for (int64_t i = r * g.n; i < (r + 1) * g.n; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(g.x[i])));
      err = std::max(err, std::fabs(static_cast<double>(values[i]) - g.x[i]));
    }
    CAPTURE(r);
    if (amax > 1e-3) CHECK(err <= bound * amax);
  }
}

}  // namespace

TEST_CASE("Q4_K, Q5_K, Q6_K and Q5_0 encoders give ggml's quantizer's bytes") {
  using namespace numerics;
  // Bounds: half a step of the format's code range over the sub-block's spread, doubled for the 6-bit scales.
  check_close(check_encoder<BlockQ4_K>("q4_k", kGgmlSuperBlock, quantize_row_q4_K_ref, dequantize_block_q4_K),
              2.0 / 15);
  check_close(check_encoder<BlockQ5_K>("q5_k", kGgmlSuperBlock, quantize_row_q5_K_ref, dequantize_block_q5_K),
              2.0 / 31);
  check_close(check_encoder<BlockQ6_K>("q6_k", kGgmlSuperBlock, quantize_row_q6_K_ref, dequantize_block_q6_K),
              1.0 / 32);
  check_close(check_encoder<BlockQ5_0>("q5_0", kGgmlBlock, quantize_row_q5_0_ref, dequantize_block_q5_0), 1.0 / 16);
}

TEST_CASE("Q8_K input rounding gives the values ggml's quantize_row_q8_K_ref and dequantize_row_q8_K give") {
  const Golden& g = golden();
  const std::vector<uint8_t> bytes = from_hex(g.json["q8_k_values_f32_le"].get<std::string>());
  std::vector<float> want(g.x.size()), got(g.x.size());
  REQUIRE(bytes.size() == want.size() * sizeof(float));
  std::memcpy(want.data(), bytes.data(), bytes.size());
  numerics::fake_quantize_row_q8_K(g.x.data(), got.data(), static_cast<int64_t>(got.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::memcmp(&got[i], &want[i], sizeof(float)) == 0);
  }
}

TEST_CASE("an all-zero super-block quantizes to zero scales and zero values") {
  using namespace numerics;
  const std::vector<float> zeros(kGgmlSuperBlock, 0.0f);
  BlockQ4_K q4{};
  BlockQ6_K q6{};
  quantize_row_q4_K_ref(zeros.data(), &q4, kGgmlSuperBlock);
  quantize_row_q6_K_ref(zeros.data(), &q6, kGgmlSuperBlock);
  CHECK(q4.d == 0);
  CHECK(q4.dmin == 0);
  CHECK(q6.d == 0);
  std::vector<float> back(kGgmlSuperBlock, 1.0f);
  dequantize_block_q4_K(q4, back.data());
  CHECK(std::all_of(back.begin(), back.end(), [](float v) { return v == 0.0f; }));
  dequantize_block_q6_K(q6, back.data());
  CHECK(std::all_of(back.begin(), back.end(), [](float v) { return v == 0.0f; }));
}
