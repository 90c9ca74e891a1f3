#pragma once
// Post-training weight quantization of single linears: the schemes a whole model can be stored in
// (`qtune quantize`, the quantizing loader) and the real module each one becomes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "engine/module.h"
#include "engine/tensor.h"
#include "quant/float8.h"
#include "quant/weight_scheme.h"

namespace qtune::quant {

// Whether `scheme`'s module is built and runs on a GPU (NF4 and float8 weights); the others are CPU only.
bool quantizes_on_gpu(const WeightScheme& scheme);

// weight: [out, in] (f32 or bf16; on a GPU only for quantizes_on_gpu schemes), bias: [out] or undefined -> the
// module computing the quantized linear, on the weight's device: Int8DynActInt4WeightLinear,
// Int4WeightOnlyLinear, FrozenNF4Linear, Float8FrozenLinear, or for q4_0 / q8_0 an nn::Linear holding the
// dequantized values (what llama.cpp computes with; re-quantizing them is lossless). The module does not keep
// `weight` alive.
ModulePtr quantize_linear(const Tensor& weight, const Tensor& bias, const WeightScheme& scheme, std::string_view fqn);

}  // namespace qtune::quant
