#pragma once
// llama.cpp's Q4_0 / Q8_0 blocks for whole weight matrices, through the row codecs of
// engine/numerics/ggml_blocks.h (docs/numerics.md §2, §9): what quantized checkpoints store for q4_0 /
// q8_0 linears, and what a GGUF writer puts in a file.
#include <cstdint>

#include "engine/tensor.h"

namespace qtune::quant {

enum class GgmlFormat : uint8_t { q4_0, q8_0 };

// A weight [out, in] in ggml blocks, each row its own in / 32 blocks, held as two planes (the layout of
// qtune's quantized checkpoints, docs/quantized-format.md): `codes` the blocks' qs bytes -- q4_0: [out, in/2]
// u8, 16 bytes per block (byte j: element j in the low nibble, element j + 16 in the high one); q8_0:
// [out, in] i8 -- and `d` the blocks' fp16 scales [out, in/32] f16.
struct GgmlPlanes {
  Tensor codes, d;
};

// weight: [out, in] on CPU in any floating dtype (converted to f32 first, as llama.cpp's quantizer reads
// f32), in a multiple of 32 (an Error naming the shape otherwise).
GgmlPlanes encode_ggml(const Tensor& weight, GgmlFormat format);
// -> [out, in] f32: the values the blocks stand for (what llama.cpp dequantizes them to). The planes'
// shapes and dtypes are checked.
Tensor decode_ggml(const GgmlPlanes& planes, GgmlFormat format);

}  // namespace qtune::quant
