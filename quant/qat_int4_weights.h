#pragma once
// Packed int4 weights of the converted QAT modules: codes from the same scalar formulas the fake
// quantizers use (engine/numerics/intx_quant.h), so dequantized values equal the fake-quantized ones.
#include <cstdint>

#include "engine/numerics/intx_quant.h"
#include "engine/tensor.h"

namespace qtune::quant {

struct PackedInt4 {
  Tensor codes;              // [rows, cols/2] u8: unsigned codes 0..15 (signed code + 8), element 2i in the low nibble
  Tensor scales;             // [rows, cols/group] f32
  Tensor zeros;              // [rows, cols/group] f32: int4 weight-only's `zero` (the value of code 8); else undefined
  DType dtype = DType::f32;  // the dtype of the weight the codes came from (dequantization rounds to it)
};

// w: [rows, cols] (CPU, floating), cols a multiple of `group` and of 2. spec: an int4 intx symmetric spec
// (8da4w weights, embeddings) or int4_weight_only.
PackedInt4 pack_int4(const Tensor& w, const numerics::FakeQuantSpec& spec);

// Checks packed parts that did not come from pack_int4 (a checkpoint): codes [rows, cols/2] u8, scales (and
// zeros when `with_zeros`, else none) [rows, cols/group] f32, all on CPU. Throws naming `who` and the rule.
void check_packed_int4(const PackedInt4& packed, int64_t group, bool with_zeros, const char* who);

// The dequantized rows `rows[0..n)` of `packed` into out: [n, cols] of packed.dtype (CPU). Equal, bit for
// bit, to fake_quantize(w, spec) on those rows.
void dequantize_int4_rows(const PackedInt4& packed, const int64_t* rows, int64_t n, const Tensor& out);

}  // namespace qtune::quant
