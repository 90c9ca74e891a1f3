#pragma once
// llama.cpp's K-quant quantizers without an importance matrix (docs/numerics.md §9): for each sub-block a
// search over candidate scales for the one of least weighted squared error, then the super-block's f16 scales and
// the 6-bit (Q4_K, Q5_K) or 8-bit (Q6_K) sub-block scales, then every code recomputed against the rounded
// scales. Each float operation is the one ggml's reference quantizer performs, in its order (this file is built
// with -ffp-contract=off like the rest of qtune), so the blocks are byte for byte those of an x86-64 llama-quantize
// (an ARM build contracts multiply-adds into FMAs).
#include <cstdint>

#include "engine/numerics/ggml_k_blocks.h"

namespace qtune::numerics {

// x: [k] f32 with k a multiple of kGgmlSuperBlock -> k / 256 blocks.
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t k);
void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t k);

// x: [k] (a multiple of 256) -> y: x as llama.cpp's CPU backend rounds a K-quant linear's input before the dot
// product (Q8_K: per 256 values, with m the one of largest |x| (sign kept, first on ties), q = min(127,
// round_half_even(-127 x / m)) and the value q * (m / -127) in f32; an all-zero block stays zero). x and y may
// be the same array.
void fake_quantize_row_q8_K(const float* x, float* y, int64_t k);

}  // namespace qtune::numerics
