#pragma once
// FrozenGgmlLinear: a Linear whose weight stays in the ggml blocks a GGUF file stores it in (Q4_0, Q8_0, Q4_K, Q6_K,
// ...) and is frozen: the base of a LoRA run on a quantized GGUF model (docs/gguf.md), trained against exactly the
// weights llama.cpp runs (exactly in f32; a bf16 run rounds them to bf16, as it does any weight), in the file's
// size. Forward and backward dequantize the weight a tile of rows at a time into the input's dtype, one GEMM per
// tile (as linear_nf4 does): no dense copy outlives a GEMM, and the autograd node keeps only the blocks. CPU only.
#include "engine/io/ggml_type.h"
#include "engine/module.h"

namespace qtune::quant {

class FrozenGgmlLinear : public Module {
 public:
  // blocks: [out, row bytes] u8, each row the in / block-size blocks of one output (a GGUF tensor's rows, in
  // Hugging Face's row order); bias: [out] or undefined (frozen). An Error names a shape that does not match.
  FrozenGgmlLinear(io::GgmlType type, const Tensor& blocks, int64_t in_features, const Tensor& bias = Tensor());

  // x: [..., in] -> [..., out] in x's dtype; gradients reach x (and a LoRA beside it), never the weight.
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  io::GgmlType type() const { return type_; }
  // -> [out, in] in `dtype`: the values llama.cpp computes with.
  Tensor dequantize(DType dtype = DType::f32) const;
  Tensor& bias() { return bias_; }  // undefined without bias
  // Rounds each input row first as llama.cpp's CPU backend does for this weight type (Q8_0 blocks of 32 for
  // Q4_0 / Q5_0 / Q8_0, with ggml's reference rounding; Q8_K blocks of 256 for the K-quants) and computes in f32
  // whatever the input's dtype, so the layer gives llama.cpp's numerics up to float summation order
  // (`--as-llama-cpp`). Gradients pass the rounding straight through.
  void set_llama_cpp_inputs(bool on) { llama_cpp_inputs_ = on; }

 private:
  io::GgmlType type_;
  int64_t in_features_, out_features_;
  // A non-persistent buffer "ggml_blocks": Module::to(device) moves it, state_dict (the HF layout) leaves it out.
  Tensor blocks_;
  Tensor bias_;
  bool llama_cpp_inputs_ = false;
};

}  // namespace qtune::quant
