#include "quant/ggml_blocks.h"

#include <cstring>
#include <vector>

#include "engine/check.h"
#include "engine/numerics/ggml_blocks.h"

namespace qtune::quant {
namespace {

using numerics::kGgmlBlock;

constexpr int64_t code_bytes(GgmlFormat format) { return format == GgmlFormat::q4_0 ? kGgmlBlock / 2 : kGgmlBlock; }

// Row by row through ggml's row codecs; the planes hold the blocks' qs bytes and their d apart.
template <class Block>
void encode_rows(const float* x, int64_t rows, int64_t k, void (*quantize_row)(const float*, Block*, int64_t),
                 uint8_t* codes, uint16_t* d) {
  std::vector<Block> row(static_cast<size_t>(k / kGgmlBlock));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(x + r * k, row.data(), k);
    for (const Block& block : row) {
      *d++ = block.d;
      std::memcpy(codes, block.qs, sizeof(block.qs));
      codes += sizeof(block.qs);
    }
  }
}

template <class Block>
void decode_rows(const uint8_t* codes, const uint16_t* d, int64_t rows, int64_t k,
                 void (*dequantize_row)(const Block*, float*, int64_t), float* y) {
  std::vector<Block> row(static_cast<size_t>(k / kGgmlBlock));
  for (int64_t r = 0; r < rows; ++r) {
    for (Block& block : row) {
      block.d = *d++;
      std::memcpy(block.qs, codes, sizeof(block.qs));
      codes += sizeof(block.qs);
    }
    dequantize_row(row.data(), y + r * k, k);
  }
}

}  // namespace

GgmlPlanes encode_ggml(const Tensor& weight, GgmlFormat format) {
  QTUNE_CHECK(weight.dim() == 2 && weight.size(1) % kGgmlBlock == 0 && weight.device().is_cpu(), "encode_ggml: weight ",
              shape_str(weight.shape()), " on ", weight.device().str(),
              " must be [out, in] on CPU with in a multiple of ", kGgmlBlock);
  const Tensor w = weight.detach().to(DType::f32).contiguous();
  const int64_t out = w.size(0), in = w.size(1);
  const bool q4 = format == GgmlFormat::q4_0;
  GgmlPlanes planes{Tensor::empty({out, q4 ? in / 2 : in}, q4 ? DType::u8 : DType::i8),
                    Tensor::empty({out, in / kGgmlBlock}, DType::f16)};
  auto* codes = static_cast<uint8_t*>(planes.codes.data_ptr());
  auto* d = static_cast<uint16_t*>(planes.d.data_ptr());
  if (q4)
    encode_rows<numerics::BlockQ4_0>(w.data<float>(), out, in, numerics::quantize_row_q4_0_ref, codes, d);
  else
    encode_rows<numerics::BlockQ8_0>(w.data<float>(), out, in, numerics::quantize_row_q8_0_ref, codes, d);
  return planes;
}

Tensor decode_ggml(const GgmlPlanes& planes, GgmlFormat format) {
  const Tensor& d = planes.d;
  QTUNE_CHECK(d.dim() == 2 && d.dtype() == DType::f16 && d.device().is_cpu(), "decode_ggml: scales ",
              dtype_name(d.dtype()), " ", shape_str(d.shape()), " must be f16 [out, in/32] on CPU");
  const int64_t out = d.size(0), in = d.size(1) * kGgmlBlock;
  const DType code_dtype = format == GgmlFormat::q4_0 ? DType::u8 : DType::i8;
  QTUNE_CHECK(planes.codes.shape() == Shape({out, in * code_bytes(format) / kGgmlBlock}) &&
                  planes.codes.dtype() == code_dtype && planes.codes.device().is_cpu(),
              "decode_ggml: codes ", dtype_name(planes.codes.dtype()), " ", shape_str(planes.codes.shape()),
              " do not match scales ", shape_str(d.shape()), " (expected ", dtype_name(code_dtype), " [", out, ", ",
              in * code_bytes(format) / kGgmlBlock, "])");
  const Tensor codes = planes.codes.contiguous(), scales = d.contiguous();
  Tensor w = Tensor::empty({out, in}, DType::f32);
  const auto* c = static_cast<const uint8_t*>(codes.data_ptr());
  const auto* s = static_cast<const uint16_t*>(scales.data_ptr());
  if (format == GgmlFormat::q4_0)
    decode_rows<numerics::BlockQ4_0>(c, s, out, in, numerics::dequantize_row_q4_0, w.data<float>());
  else
    decode_rows<numerics::BlockQ8_0>(c, s, out, in, numerics::dequantize_row_q8_0, w.data<float>());
  return w;
}

}  // namespace qtune::quant
