#pragma once
// NF4Tensor: a frozen weight stored as torchao's NF4 (docs/numerics.md §1): 4-bit codes of 64-element blocks
// and double-quantized absmaxes. qtune pads the last block and the last scaler block instead of
// refusing shapes torchao rejects (numel not a multiple of 64 * 256), and equals torchao bit for bit
// where torchao accepts the shape. A block of zeros dequantizes to zeros (torchao gives NaN there).
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace qtune::quant {

class NF4Tensor {
 public:
  static constexpr int64_t kBlockSize = 64;
  static constexpr int64_t kScalerBlockSize = 256;

  NF4Tensor() = default;  // undefined
  // weight: any shape and layout, f32 or bf16, on any device with the NF4 kernels. No gradient flows.
  static NF4Tensor quantize(const Tensor& weight);
  // Parts of the right sizes for a `dtype` weight of `shape` that hold no memory yet (Tensor::reserved): a
  // sharded load fills each rank's pieces.
  static NF4Tensor reserved(const Shape& shape, DType dtype, Device device = Device::cpu());
  // Rebuilds a tensor from its stored parts (a checkpoint), checking them against `shape`; the dtype is
  // the factors' dtype.
  static NF4Tensor from_parts(const Shape& shape, Tensor codes, Tensor scalers, Tensor factors, Tensor mean);

  // [shape] in `dtype` (any floating dtype): computed in dtype() exactly as torchao, then cast.
  Tensor dequantize(DType dtype) const;
  Tensor dequantize() const { return dequantize(dtype()); }
  // Elements [first, first + count) of the flattened weight, dequantized into out ([count], contiguous).
  void dequantize_range(int64_t first, const Tensor& out) const;

  bool defined() const { return codes_.defined(); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_of(shape_); }
  DType dtype() const { return factors_.dtype(); }  // of the weight it came from
  Device device() const { return codes_.device(); }
  NF4Tensor to(Device device) const;

  // Bytes of the stored parts, and per weight in bits (~4.127 for a large f32 or bf16 weight).
  size_t nbytes() const;
  double bits_per_weight() const { return 8.0 * static_cast<double>(nbytes()) / static_cast<double>(numel()); }

  // The stored parts, for checkpoints: codes [blocks * 32] u8 (element 2i in the high nibble),
  // scalers [blocks] i8, factors [scaler blocks] and mean [1] in dtype().
  const Tensor& codes() const { return codes_; }
  const Tensor& scalers() const { return scalers_; }
  const Tensor& factors() const { return factors_; }
  const Tensor& mean() const { return mean_; }
  // The parts by name ("codes", "scalers", "factors", "mean"), in that order.
  std::vector<std::pair<std::string, Tensor>> parts() const;

 private:
  Shape shape_;
  Tensor codes_, scalers_, factors_, mean_;
};

}  // namespace qtune::quant
