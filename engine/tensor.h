#pragma once
// Tensor: a cheap value handle to a TensorImpl (shared ownership). Copies of a handle are the same
// tensor (same .grad, same autograd history); views are new TensorImpls over the same Storage.
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/shape.h"
#include "engine/storage.h"

namespace qtune {

class Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;     // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  int output_nr = 0;              // which output of grad_fn this is
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage); defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories -------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // A tensor whose memory is not taken (Storage::reserve): its data may not be read or written until
  // storage()->reallocate(). What a sharded load builds before each rank fills its own piece.
  static Tensor reserved(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::i64, Device device = Device::cpu());
  // Copies `count` elements of `dtype` from host memory; shape must hold exactly that many.
  static Tensor from_data(const void* data, const Shape& shape, DType dtype, Device device = Device::cpu());
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu()) {
    return from_data(values.data(), shape, dtype_of<T>(), device);
  }
  // Values given as doubles, stored as `dtype` (rounded as a cast would).
  static Tensor from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                             Device device = Device::cpu());
  // A tensor over existing storage (no copy).
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
                             int64_t offset, DType dtype);

  // ---- metadata --------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t size(int64_t dim) const;
  size_t dim() const { return shape().size(); }
  const Strides& strides() const;
  int64_t stride(int64_t dim) const;
  int64_t offset() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  // Address of element [0, 0, ...] (storage base + offset).
  void* data_ptr() const;
  template <class T>
  T* data() const;  // checks that T matches dtype()

  // Host copies of the values, converted to T (any dtype, any device, any layout).
  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // the single element, as double

  // ---- views and copies (differentiable) ---------------------------------------------------------
  Tensor view(const Shape& shape) const;     // one -1 may be inferred; needs view-compatible strides
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a contiguous copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor expand(const Shape& shape) const;          // size-1 dims broadcast with stride 0
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor contiguous() const;  // self when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor detach() const;  // same storage, no autograd history, requires_grad false

  // ---- autograd ----------------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward pass reaches this leaf
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient (set_to_none semantics)
  const std::shared_ptr<Node>& grad_fn() const;
  // Backpropagates from this tensor; `grad` defaults to ones for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  // ---- in place (outside autograd) -----------------------------------------------------------------
  void copy_(const Tensor& src) const;  // same shape; any dtype, device and layout
  void fill_(double value) const;
  // Re-points this tensor, in every handle that shares it, at `other`'s storage and layout (same
  // shape and dtype). How modules move parameters into one flat buffer without new Parameter objects.
  void set_data(const Tensor& other) const;

  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  std::string str() const;  // "Tensor(shape=[2, 3], dtype=f32, device=cpu)\n[[...]]"

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& t);

template <class T>
T* Tensor::data() const {
  QTUNE_CHECK(dtype() == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">() on a tensor of dtype ",
              dtype_name(dtype()));
  return static_cast<T*>(data_ptr());
}

// Reduces a broadcast gradient back to `shape` by summing over the broadcast dims.
Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace qtune
