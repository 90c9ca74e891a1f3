// llama.cpp's Q4_0 / Q8_0 blocks (docs/numerics.md §2, §9): the row codecs of engine/numerics/ggml_blocks.h
// against ggml's reference quantizers (goldens from tools/goldens/gen_qat.py), the block layout byte for
// byte, and quant::encode_ggml / decode_ggml against QAT's fake quantization, which must agree bit for bit
// (a q4_0-trained model is stored as exactly the weights it trained with).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/numerics/f16.h"
#include "engine/numerics/ggml_blocks.h"
#include "quant/ggml_blocks.h"
#include "quant/qat_config.h"
#include "quant/qat_fake_quantize.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

using namespace qtune;
using testing::error_of;

namespace {

const testing::GoldenCase& golden(const std::string& name) {
  static const auto g = testing::load_golden("qat/fake_quant.json");
  return g.at(name);
}

}  // namespace

TEST_CASE("row codecs reproduce ggml's reference codes, scales and values") {
  for (const char* name : {"q4_0", "q8_0"}) {
    CAPTURE(name);
    const bool q4 = std::string(name) == "q4_0";
    const testing::GoldenCase& c = golden(name);
    const std::vector<float> x = c.at("x").to(DType::f32).to_vector<float>();
    const std::vector<int64_t> codes = c.at("codes").to_vector<int64_t>();
    const std::vector<double> scales = c.at("scale").to_vector<double>(), fq = c.at("fq").to_vector<double>();
    const int64_t k = static_cast<int64_t>(x.size()), blocks = k / numerics::kGgmlBlock;
    REQUIRE(k % numerics::kGgmlBlock == 0);
    std::vector<float> back(x.size());
    std::vector<int64_t> got_codes(x.size());
    std::vector<double> got_scales(static_cast<size_t>(blocks));
    if (q4) {
      std::vector<numerics::BlockQ4_0> row(static_cast<size_t>(blocks));
      numerics::quantize_row_q4_0_ref(x.data(), row.data(), k);
      numerics::dequantize_row_q4_0(row.data(), back.data(), k);
      for (int64_t b = 0; b < blocks; ++b) {
        got_scales[b] = numerics::f16_bits_to_f32(row[b].d);
        for (int64_t j = 0; j < 16; ++j) {
          got_codes[b * 32 + j] = row[b].qs[j] & 0xf;
          got_codes[b * 32 + j + 16] = row[b].qs[j] >> 4;
        }
      }
    } else {
      std::vector<numerics::BlockQ8_0> row(static_cast<size_t>(blocks));
      numerics::quantize_row_q8_0_ref(x.data(), row.data(), k);
      numerics::dequantize_row_q8_0(row.data(), back.data(), k);
      for (int64_t b = 0; b < blocks; ++b) {
        got_scales[b] = numerics::f16_bits_to_f32(row[b].d);
        for (int64_t j = 0; j < 32; ++j) got_codes[b * 32 + j] = row[b].qs[j];
      }
    }
    CHECK(got_codes == codes);
    CHECK(got_scales == scales);
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(static_cast<double>(back[i]) == fq[i]);
  }
}

TEST_CASE("block layout: ggml's byte order") {
  // x[j] = j - 16 for j < 16 and j - 15 above: the largest magnitude is x[0] = -16 (first on ties with x[31] = 16),
  // so d = -16 / -8 = 2 and x[j] maps to trunc(x / 2 + 8.5).
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j < 16 ? j - 16 : j - 15);
  numerics::BlockQ4_0 b4;
  numerics::quantize_block_q4_0(x, b4);
  CHECK(numerics::f16_bits_to_f32(b4.d) == 2.0f);
  CHECK(b4.qs[0] == 0x90);   // x[0] = -16 -> trunc(0.5) = 0 (low nibble), x[16] = 1 -> trunc(9.0) = 9 (high)
  CHECK(b4.qs[15] == 0xf8);  // x[15] = -1 -> 8 (low), x[31] = 16 -> trunc(16.5) = 16, clamped to 15 (high)
  // Every byte from the element rule the format states.
  for (int j = 0; j < 16; ++j) {
    const auto code = [&](float v) { return std::min(15, static_cast<int>(static_cast<int8_t>(v / 2.0f + 8.5f))); };
    CHECK(b4.qs[j] == static_cast<uint8_t>(code(x[j]) | (code(x[j + 16]) << 4)));
  }
  numerics::BlockQ8_0 b8;
  numerics::quantize_block_q8_0(x, b8);
  CHECK(numerics::f16_bits_to_f32(b8.d) == numerics::f16_bits_to_f32(numerics::f32_to_f16_bits(16.0f / 127.0f)));
  CHECK(b8.qs[0] == -127);
  CHECK(b8.qs[31] == 127);
  // An all-zero block stores d = 0 and dequantizes to zeros.
  float zeros[32] = {};
  numerics::quantize_block_q8_0(zeros, b8);
  float back[32];
  numerics::dequantize_block_q8_0(b8, back);
  for (float v : back) CHECK(v == 0.0f);
}

TEST_CASE("encode_ggml / decode_ggml hold exactly the fake-quantized weights") {
  for (const DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& scheme : {quant::LinearScheme{quant::Q4_0{}}, quant::LinearScheme{quant::Q8_0{}}}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(quant::scheme_name(scheme));
      const quant::GgmlFormat format =
          std::holds_alternative<quant::Q4_0>(scheme) ? quant::GgmlFormat::q4_0 : quant::GgmlFormat::q8_0;
      const Tensor w = testing::random_f64({24, 96}, 5, -2.0, 2.0).to(dtype);
      const Tensor fq = quant::fake_quantize(w, quant::weight_spec(scheme));
      const quant::GgmlPlanes planes = quant::encode_ggml(w, format);
      CHECK(planes.d.shape() == Shape({24, 3}));
      CHECK(planes.codes.shape() == Shape({24, format == quant::GgmlFormat::q4_0 ? 48 : 96}));
      const Tensor back = quant::decode_ggml(planes, format).to(dtype).contiguous();
      const Tensor want = fq.contiguous();
      CHECK(std::memcmp(back.data_ptr(), want.data_ptr(), want.nbytes()) == 0);
      // Quantizing the fake-quantized weights again gives the same blocks: the format is a fixed point.
      const quant::GgmlPlanes again = quant::encode_ggml(fq, format);
      CHECK(std::memcmp(again.codes.data_ptr(), planes.codes.data_ptr(), planes.codes.nbytes()) == 0);
      CHECK(std::memcmp(again.d.data_ptr(), planes.d.data_ptr(), planes.d.nbytes()) == 0);
    }
  }
}

TEST_CASE("encode_ggml / decode_ggml reject shapes that are not whole blocks") {
  CHECK(error_of([] {
          quant::encode_ggml(Tensor::zeros({4, 40}), quant::GgmlFormat::q4_0);
        }).find("encode_ggml: weight [4, 40] on cpu must be [out, in] on CPU with in a multiple of 32") !=
        std::string::npos);
  const quant::GgmlPlanes planes = quant::encode_ggml(Tensor::zeros({4, 64}), quant::GgmlFormat::q4_0);
  CHECK(error_of([&] {
          quant::decode_ggml(planes, quant::GgmlFormat::q8_0);
        }).find("decode_ggml: codes u8 [4, 32] do not match scales [4, 2] (expected i8 [4, 64])") != std::string::npos);
  CHECK(error_of([&] {
          quant::decode_ggml({planes.codes, Tensor::zeros({4, 2})}, quant::GgmlFormat::q4_0);
        }).find("decode_ggml: scales f32 [4, 2] must be f16") != std::string::npos);
}
