#include "quant/frozen_ggml_linear.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/gguf_file.h"
#include "engine/numerics/ggml_k_quantize.h"
#include "ops/elementwise.h"
#include "quant/qat_config.h"
#include "quant/qat_fake_quantize.h"

namespace qtune::quant {
namespace {

constexpr int64_t kTileElements = int64_t{1} << 22;  // weights dequantized per GEMM, as linear_nf4 does

// Calls gemm_tile(first_row, rows, tile) for each tile of the weight's rows, tile: [1, rows, in] holding those
// rows dequantized to `dtype`: the whole dense weight never exists, in forward or backward.
template <class F>
void for_each_tile(io::GgmlType type, const Tensor& blocks, int64_t in, DType dtype, F&& gemm_tile) {
  const int64_t out = blocks.size(0), row_bytes = blocks.size(1);
  const int64_t tile_rows = std::clamp<int64_t>(kTileElements / in, 1, out);
  const Tensor scratch = Tensor::empty({tile_rows * in}, DType::f32);
  const auto* bytes = static_cast<const std::byte*>(blocks.data_ptr());
  for (int64_t r = 0; r < out; r += tile_rows) {
    const int64_t rows = std::min(tile_rows, out - r);
    const Tensor tile = scratch.narrow(0, 0, rows * in);
    io::dequantize_ggml(type, bytes + r * row_bytes, tile.data<float>(), rows * in);
    gemm_tile(r, rows, tile.to(dtype).view({1, rows, in}));
  }
}

// x2: [N, in] f32 -> a copy with each row rounded as llama.cpp rounds the inputs of a `type` weight.
Tensor round_as_llama_cpp(const Tensor& x2, io::GgmlType type) {
  // Q8_0 blocks: QAT's ggml_q8_0 schemes round linear inputs exactly so.
  if (io::ggml_type_layout(type).block != numerics::kGgmlSuperBlock)
    return fake_quantize(x2, *activation_spec(GgmlQ8_0{}));
  const Tensor rows = x2.clone();
  numerics::fake_quantize_row_q8_K(rows.data<float>(), rows.data<float>(), rows.numel());
  return rows;
}

}  // namespace

FrozenGgmlLinear::FrozenGgmlLinear(io::GgmlType type, const Tensor& blocks, int64_t in_features, const Tensor& bias)
    : Module("FrozenGgmlLinear"), type_(type), in_features_(in_features), out_features_(blocks.size(0)) {
  QTUNE_CHECK(io::GgufFile::can_dequantize(type), "FrozenGgmlLinear: qtune cannot dequantize ",
              io::ggml_type_name(type));
  const io::GgmlTypeLayout layout = io::ggml_type_layout(type);
  QTUNE_CHECK(in_features > 0 && in_features % layout.block == 0, "FrozenGgmlLinear: ", in_features,
              " inputs are not whole ", io::ggml_type_name(type), " blocks of ", layout.block);
  QTUNE_CHECK(blocks.dtype() == DType::u8 && blocks.dim() == 2 &&
                  blocks.size(1) == static_cast<int64_t>(io::ggml_row_bytes(type, static_cast<uint64_t>(in_features))),
              "FrozenGgmlLinear: blocks ", dtype_name(blocks.dtype()), " ", shape_str(blocks.shape()),
              " are not [out, ", io::ggml_row_bytes(type, static_cast<uint64_t>(in_features)), "] u8 for ", in_features,
              " inputs of ", io::ggml_type_name(type));
  QTUNE_CHECK(!bias.defined() || bias.shape() == Shape{out_features_}, "FrozenGgmlLinear: bias ",
              shape_str(bias.shape()), " for ", out_features_, " outputs");
  blocks_ = blocks.contiguous();
  register_buffer("ggml_blocks", &blocks_, false);
  if (bias.defined()) {
    bias_ = bias.detach();
    register_parameter("bias", &bias_, false);
  }
}

Tensor FrozenGgmlLinear::dequantize(DType dtype) const {
  const Tensor blocks = blocks_.to(Device::cpu());
  Tensor w = Tensor::empty({out_features_, in_features_}, DType::f32);
  io::dequantize_ggml(type_, static_cast<const std::byte*>(blocks.data_ptr()), w.data<float>(), w.numel());
  return w.to(dtype).to(blocks_.device());
}

Tensor FrozenGgmlLinear::forward(const Tensor& x) {
  QTUNE_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "FrozenGgmlLinear: input ", shape_str(x.shape()),
              " does not match ", in_features_, " inputs");
  QTUNE_CHECK(x.device().is_cpu() && blocks_.device().is_cpu(), "FrozenGgmlLinear: runs on the CPU (input on ",
              x.device().str(), ")");
  Shape out_shape = x.shape();
  out_shape.back() = out_features_;
  Backend& be = backend_for(x.device());
  Tensor y;
  {
    NoGradGuard no_grad;
    // llama.cpp's numerics are f32 arithmetic on the rounded inputs and the blocks' values: computed in f32 even
    // when the model runs in bf16 (then only the output is rounded to bf16).
    const bool llama_cpp = llama_cpp_inputs_ && io::is_quantized_type(type_);
    const DType compute = llama_cpp ? DType::f32 : x.dtype();
    Tensor x2 = x.detach().reshape({-1, in_features_}).to(compute).contiguous();
    if (llama_cpp) x2 = round_as_llama_cpp(x2, type_);
    y = Tensor::empty({x2.size(0), out_features_}, compute);
    for_each_tile(type_, blocks_, in_features_, compute, [&](int64_t r, int64_t rows, const Tensor& tile) {
      be.gemm(x2.unsqueeze(0), false, tile, true, y.narrow(1, r, rows).unsqueeze(0), 1.0, 0.0);
    });
    y = y.to(x.dtype()).view(out_shape);
  }
  if (autograd::needs_grad({x})) {
    // Saves the blocks only (shared storage): grad_x = grad_y @ W, re-dequantized a tile at a time.
    const Shape x_shape = x.shape();
    autograd::record("frozen_ggml_linear", {x}, {y},
                     [type = type_, blocks = blocks_, in = in_features_, out = out_features_,
                      x_shape](const std::vector<Tensor>& g) {
                       const Tensor g2 = g[0].reshape({-1, out}).contiguous();
                       const Tensor gx = Tensor::empty({g2.size(0), in}, g2.dtype());
                       Backend& backend = backend_for(g2.device());
                       for_each_tile(type, blocks, in, g2.dtype(), [&](int64_t r, int64_t rows, const Tensor& tile) {
                         backend.gemm(g2.narrow(1, r, rows).unsqueeze(0), false, tile, false, gx.unsqueeze(0), 1.0,
                                      r == 0 ? 0.0 : 1.0);
                       });
                       return std::vector<Tensor>{gx.view(x_shape)};
                     });
  }
  return bias_.defined() ? ops::add(y, bias_.to(y.dtype())) : y;
}

}  // namespace qtune::quant
