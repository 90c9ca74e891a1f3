#pragma once
// The element loops of QAT fake quantization for the intx and int4 weight-only schemes, in a form GCC
// vectorizes. They live in their own file because it is compiled with -fno-trapping-math (without it GCC
// keeps any loop with a float compare-and-select scalar), and that flag must not reach the scalar reference
// of the other schemes: under it GCC folds q8_0's float -> int -> float round trip away, which turns
// +0.0 codes into -0.0.
#include <cstdint>

#include "engine/dtype.h"
#include "engine/numerics/intx_quant.h"

namespace qtune::cpu {

// Fake quantizes x[0..n) (one group) into out and writes the STE mask, bit for bit as
// numerics::fake_quantize_group does, and returns true; returns false (writing nothing) for the schemes
// it leaves to the reference (q4_0, q8_0). The caller checks that the rounding mode is round-to-nearest.
// T: float, bf16_t or f16_t.
template <class T>
bool fake_quantize_group_vectorized(const T* x, int64_t n, const numerics::FakeQuantSpec& spec, T* out, uint8_t* mask);

}  // namespace qtune::cpu
