// NF4: the scalar numerics (engine/numerics/nf4.h), the CPU kernels and quant::NF4Tensor against torchao
// 0.18's to_nf4 (goldens from tools/goldens/gen_nf4.py, compared bit for bit) and against a plain scalar
// reference for the shapes torchao refuses.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/io/safetensors.h"
#include "engine/numerics/nf4.h"
#include "quant/nf4_tensor.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

using namespace qtune;
using qtune::testing::random_f64;
using quant::NF4Tensor;

namespace {

io::SafetensorsFile golden(const std::string& name) {
  return io::SafetensorsFile::open(std::string(QTUNE_GOLDEN_DIR) + "/nf4/" + name + ".safetensors");
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  std::vector<uint8_t> out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

#define CHECK_SAME_BYTES(actual, expected)                                                               \
  do {                                                                                                   \
    REQUIRE((actual).dtype() == (expected).dtype());                                                     \
    REQUIRE((actual).numel() == (expected).numel());                                                     \
    CHECK_MESSAGE(bytes_of(actual) == bytes_of(expected), #actual " differs from torchao's " #expected); \
  } while (0)

// The plain reference: docs/numerics.md §1 element by element over numerics/nf4.h, with qtune's padding (the
// last block padded with zeros; mean and max|s| over the real blocks). Small sizes only: the mean is one
// f64 sum in order, which equals the kernels' chunked order below kNF4MeanChunk blocks.
template <class D>
struct Reference {
  std::vector<uint8_t> codes;
  std::vector<int8_t> scalers;
  std::vector<float> factors, dequant;
  float mean = 0.0f;

  explicit Reference(const std::vector<float>& w) {
    const int64_t n = static_cast<int64_t>(w.size()), blocks = (n + 63) / 64;
    float table[16];
    for (int c = 0; c < 16; ++c) table[c] = numerics::nf4_code_value<D>(c);
    std::vector<float> absmax(blocks, 0.0f);
    for (int64_t i = 0; i < n; ++i) absmax[i / 64] = std::max(absmax[i / 64], std::fabs(w[i]));
    double sum = 0.0;
    for (float a : absmax) sum += a;
    mean = numerics::nf4_mean<D>(sum, blocks);
    for (int64_t first = 0; first < blocks; first += 256) {
      const int64_t last = std::min(blocks, first + 256);
      float max_abs = 0.0f;
      for (int64_t b = first; b < last; ++b)
        max_abs = std::max(max_abs, std::fabs(numerics::round_to<D>(absmax[b] - mean)));
      factors.push_back(numerics::nf4_scaler_factor<D>(max_abs));
      for (int64_t b = first; b < last; ++b)
        scalers.push_back(numerics::nf4_quantize_scaler<D>(numerics::round_to<D>(absmax[b] - mean), factors.back()));
    }
    std::vector<uint8_t> code(blocks * 64, 7);
    for (int64_t i = 0; i < n; ++i) code[i] = numerics::nf4_quantize_value<D>(w[i], absmax[i / 64], table);
    for (int64_t i = 0; i < blocks * 64; i += 2) codes.push_back(numerics::nf4_pack(code[i], code[i + 1]));
    for (int64_t i = 0; i < n; ++i) {
      const float scale = numerics::nf4_block_scale<D>(scalers[i / 64], factors[i / 64 / 256], mean);
      dequant.push_back(numerics::nf4_dequantize_value<D>(code[i], scale, table));
    }
  }
};

template <class D>
void check_against_reference(const Tensor& w) {
  const NF4Tensor q = NF4Tensor::quantize(w);
  const Reference<D> ref(w.reshape({-1}).to_vector<float>());
  CHECK(q.shape() == w.shape());
  CHECK(q.codes().to_vector<uint8_t>() == ref.codes);
  CHECK(q.scalers().to_vector<int8_t>() == ref.scalers);
  CHECK(q.factors().to_vector<float>() == ref.factors);
  CHECK(q.mean().item() == ref.mean);
  const Tensor d = q.dequantize();
  CHECK(d.shape() == w.shape());
  CHECK(d.dtype() == w.dtype());
  CHECK(d.reshape({-1}).to_vector<float>() == ref.dequant);
}

}  // namespace

TEST_CASE("code table and nearest code: decimal literals in D, ties to the lower index") {
  CHECK(numerics::nf4_code_value<float>(1) == -0.6962f);
  CHECK(numerics::nf4_code_value<float>(14) == 0.7230f);
  // bf16(0.7230) = 0.72265625: the table is rounded to D before any comparison.
  CHECK(numerics::nf4_code_value<bf16_t>(14) == 0.72265625f);
  float table[16];
  for (int c = 0; c < 16; ++c) table[c] = numerics::nf4_code_value<float>(c);
  // 0.0796 / 2 is exactly as far from code 7 (0.0) as from code 8: the lower index wins.
  CHECK(numerics::nf4_nearest_code<float>(table[8] / 2, table) == 7);
  CHECK(numerics::nf4_nearest_code<float>(std::nextafter(table[8] / 2, 1.0f), table) == 8);
  CHECK(numerics::nf4_nearest_code<float>(-1.0f, table) == 0);
  CHECK(numerics::nf4_nearest_code<float>(1.0f, table) == 15);
  // Packing: element 2i in the high nibble.
  CHECK(numerics::nf4_pack(0xa, 0x3) == 0xa3);
  const uint8_t packed[1] = {0xa3};
  CHECK(numerics::nf4_code_at(packed, 0) == 0xa);
  CHECK(numerics::nf4_code_at(packed, 1) == 0x3);
}

TEST_CASE("NF4Tensor equals torchao to_nf4 bit for bit (bf16 and f32, random and ties)") {
  for (const char* name : {"bf16_random", "bf16_ties", "f32_ties"}) {
    CAPTURE(name);
    const io::SafetensorsFile f = golden(name);
    const Tensor w = f.tensor("w");
    const NF4Tensor q = NF4Tensor::quantize(w);
    CHECK(q.dtype() == w.dtype());
    CHECK_SAME_BYTES(q.codes(), f.tensor("codes"));
    CHECK_SAME_BYTES(q.scalers(), f.tensor("scalers"));
    CHECK_SAME_BYTES(q.factors(), f.tensor("factors"));
    CHECK_SAME_BYTES(q.mean(), f.tensor("mean"));
    CHECK_SAME_BYTES(q.dequantize(), f.tensor("dequant"));
  }
}

TEST_CASE("f32 random weights: codes exact; torch's f32 mean summation order is not reproduced") {
  const io::SafetensorsFile f = golden("f32_random");
  const NF4Tensor q = NF4Tensor::quantize(f.tensor("w"));
  CHECK_SAME_BYTES(q.codes(), f.tensor("codes"));
  // torch sums the absmaxes in f32 in its vectorized order; qtune rounds the f64 sum: at most an ulp apart,
  // so a scaler may move by one step.
  const float mean = static_cast<float>(q.mean().item()), ref = static_cast<float>(f.tensor("mean").item());
  CHECK(std::fabs(mean - ref) <= std::fabs(std::nextafter(ref, 2 * ref) - ref));
  const std::vector<int8_t> s = q.scalers().to_vector<int8_t>(), rs = f.tensor("scalers").to_vector<int8_t>();
  for (size_t i = 0; i < s.size(); ++i) CHECK(std::abs(s[i] - rs[i]) <= 1);
  QTUNE_CHECK_CLOSE(q.dequantize(), f.tensor("dequant"), 1e-2, 1e-3);
}

TEST_CASE("shapes torchao refuses: the last block and scaler block are padded, the shape kept") {
  for (const Shape& shape : {Shape{3, 50}, Shape{7}, Shape{300, 70}, Shape{2, 3, 64}}) {
    CAPTURE(shape_str(shape));
    const Tensor w = random_f64(shape, 5, -0.3, 0.3);
    check_against_reference<float>(w.to(DType::f32));
    check_against_reference<bf16_t>(w.to(DType::bf16));
  }
}

TEST_CASE("zero blocks dequantize to zeros (torchao gives NaN there)") {
  std::vector<float> v = random_f64({1000}, 6).to(DType::f32).to_vector<float>();
  for (int i = 64; i < 128; ++i) v[i] = 0.0f;
  const Tensor d = NF4Tensor::quantize(Tensor::from_vector(v, {1000})).dequantize();
  const std::vector<float> out = d.to_vector<float>();
  for (int i = 64; i < 128; ++i) CHECK(out[i] == 0.0f);
  for (DType t : {DType::f32, DType::bf16}) {
    const Tensor z = NF4Tensor::quantize(Tensor::zeros({4, 256}, t)).dequantize(DType::f32);
    for (float x : z.to_vector<float>()) CHECK(x == 0.0f);
  }
}

TEST_CASE("dequantize a range, to another dtype") {
  const Tensor w = random_f64({37, 53}, 7).to(DType::bf16);
  const NF4Tensor q = NF4Tensor::quantize(w);
  const Tensor full = q.dequantize();
  const std::vector<float> all = full.reshape({-1}).to_vector<float>();
  for (int64_t first : {0, 1, 63, 64, 1000}) {
    const Tensor part = Tensor::empty({700}, DType::f32);
    q.dequantize_range(first, part);
    CHECK(part.to_vector<float>() == std::vector<float>(all.begin() + first, all.begin() + first + 700));
  }
  CHECK(q.dequantize(DType::f32).to_vector<float>() == full.to(DType::f32).to_vector<float>());
  CHECK_THROWS_WITH_AS(q.dequantize_range(37 * 53 - 5, Tensor::empty({6})), doctest::Contains("lie outside shape"),
                       Error);
}

TEST_CASE("memory footprint: about 4.127 bits per weight") {
  const NF4Tensor q = NF4Tensor::quantize(Tensor::zeros({1024, 4096}, DType::bf16));
  const size_t n = 1024 * 4096;
  CHECK(q.nbytes() == n / 2 + n / 64 + 2 * (n / 64 / 256) + 2);
  CHECK(q.bits_per_weight() == doctest::Approx(4.0 + 8.0 / 64 + 16.0 / (64 * 256)).epsilon(1e-5));
  CHECK(q.bits_per_weight() < 4.128);
}

TEST_CASE("stored parts round-trip through a checkpoint; wrong parts are rejected by name") {
  const NF4Tensor q = NF4Tensor::quantize(random_f64({40, 64}, 8).to(DType::f32));
  const std::vector<std::pair<std::string, Tensor>> parts = q.parts();
  REQUIRE(parts.size() == 4);
  CHECK(parts[0].first == "codes");
  const qtune::testing::ScratchDir dir("nf4");
  io::save_safetensors(dir.file("w.safetensors"), parts);
  const io::SafetensorsFile f = io::SafetensorsFile::open(dir.file("w.safetensors"));
  const NF4Tensor back =
      NF4Tensor::from_parts({40, 64}, f.tensor("codes"), f.tensor("scalers"), f.tensor("factors"), f.tensor("mean"));
  CHECK_SAME_BYTES(back.dequantize(), q.dequantize());
  CHECK_THROWS_WITH_AS(NF4Tensor::from_parts({40, 65}, q.codes(), q.scalers(), q.factors(), q.mean()),
                       doctest::Contains("40 scalers do not fit shape [40, 65]"), Error);
  CHECK_THROWS_WITH_AS(NF4Tensor::from_parts({40, 64}, q.codes().narrow(0, 0, 10), q.scalers(), q.factors(), q.mean()),
                       doctest::Contains("codes must be 1280 contiguous u8"), Error);
  CHECK_THROWS_WITH_AS(NF4Tensor::quantize(Tensor::zeros({4, 4}, DType::f16)),
                       doctest::Contains("NF4 quantizes f32 or bf16"), Error);
}
