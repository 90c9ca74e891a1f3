#include "engine/tensor.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>
#include <ostream>
#include <sstream>

#include "engine/autograd.h"
#include "engine/backend.h"

namespace qtune {
namespace {

Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Records `backward` for a one-input view/copy op when the input needs grad.
void record_unary(const char* name, const Tensor& input, const Tensor& output,
                  std::function<Tensor(const Tensor&)> backward) {
  if (!autograd::needs_grad({input})) return;
  autograd::record(name, {input}, {output}, [backward = std::move(backward)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{backward(g[0])};
  });
}

// Resolves one -1 in a requested shape against numel; throws naming both shapes otherwise.
Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      QTUNE_CHECK(infer < 0, "only one dim may be -1 in shape ", shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      QTUNE_CHECK(shape[i] >= 0, "negative size in shape ", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    QTUNE_CHECK(known != 0 && numel % known == 0, "cannot reshape ", shape_str(from), " to ", shape_str(requested));
    shape[static_cast<size_t>(infer)] = numel / known;
  }
  QTUNE_CHECK(numel_of(shape) == numel, "cannot reshape ", shape_str(from), " (", numel, " elements) to ",
              shape_str(requested));
  return shape;
}

// Strides for viewing (shape, strides) as new_shape without a copy, or empty when impossible.
// Walks the input from the innermost dim, grouping dims that are contiguous with each other into
// chunks; each chunk can be re-split freely among output dims with the same element count.
Strides view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape) {
  if (shape.empty() || numel_of(shape) == 0) return contiguous_strides(new_shape);
  Strides out(new_shape.size(), 1);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_stride = strides.back();
  int64_t chunk_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    chunk_numel *= shape[static_cast<size_t>(d)];
    const bool chunk_ends = d == 0 || (shape[static_cast<size_t>(d - 1)] != 1 &&
                                       strides[static_cast<size_t>(d - 1)] != chunk_numel * chunk_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < chunk_numel || new_shape[static_cast<size_t>(view_d)] == 1)) {
      out[static_cast<size_t>(view_d)] = view_numel * chunk_stride;
      view_numel *= new_shape[static_cast<size_t>(view_d)];
      --view_d;
    }
    if (view_numel != chunk_numel) return {};
    if (d > 0) {
      chunk_stride = strides[static_cast<size_t>(d - 1)];
      chunk_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return {};
  return out;
}

}  // namespace

// ---- factories ----------------------------------------------------------------------------------

namespace {

Tensor over_new_storage(const Shape& shape, DType dtype, Device device, bool reserve_only) {
  for (int64_t d : shape) QTUNE_CHECK(d >= 0, "negative size in shape ", shape_str(shape));
  const size_t nbytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = reserve_only ? Storage::reserve(nbytes, device) : Storage::allocate(nbytes, device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return over_new_storage(shape, dtype, device, false);
}

Tensor Tensor::reserved(const Shape& shape, DType dtype, Device device) {
  return over_new_storage(shape, dtype, device, true);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<int64_t> values(static_cast<size_t>(n));
  std::iota(values.begin(), values.end(), int64_t{0});
  Tensor t = from_vector(values, {n}, device);
  return dtype == DType::i64 ? t : t.to(dtype);
}

Tensor Tensor::from_data(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.nbytes() > 0) backend_for(device).copy_from_host(data, t);
  return t;
}

Tensor Tensor::from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  QTUNE_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), values.size(), " values for shape ",
              shape_str(shape));
  Tensor t = from_data(values.data(), shape, DType::f64, Device::cpu());
  if (dtype != DType::f64) t = t.to(dtype);
  return device.is_cpu() ? t : t.to(device);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
                            int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- metadata -----------------------------------------------------------------------------------

const TensorImpl& Tensor::checked() const {
  QTUNE_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

const Shape& Tensor::shape() const { return checked().shape; }
int64_t Tensor::size(int64_t dim) const { return shape()[static_cast<size_t>(normalize_dim(dim, this->dim()))]; }
const Strides& Tensor::strides() const { return checked().strides; }
int64_t Tensor::stride(int64_t dim) const { return strides()[static_cast<size_t>(normalize_dim(dim, this->dim()))]; }
int64_t Tensor::offset() const { return checked().offset; }
int64_t Tensor::numel() const { return numel_of(shape()); }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked().storage; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element is out of place, whatever the strides
  const auto& s = shape();
  const auto& st = strides();
  int64_t expected = 1;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  const TensorImpl& t = checked();
  QTUNE_CHECK(t.storage->has_data(), "a ", shape_str(t.shape),
              " tensor's memory is not there: it is reserved or freed (a sharded tensor outside its gather?)");
  return static_cast<char*>(t.storage->data()) + t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  NoGradGuard no_grad;
  Tensor host = to(Device::cpu()).to(dtype_of<T>()).contiguous();
  std::vector<T> out(static_cast<size_t>(host.numel()));
  if (!out.empty()) std::memcpy(out.data(), host.data_ptr(), out.size() * sizeof(T));
  return out;
}
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int8_t> Tensor::to_vector<int8_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  QTUNE_CHECK(numel() == 1, "item() needs a one-element tensor, got shape ", shape_str(shape()));
  return to_vector<double>()[0];
}

// ---- views --------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), this->shape());
  Strides st = view_strides(this->shape(), strides(), shape);
  QTUNE_CHECK(st.size() == shape.size(), "view: cannot view a tensor of shape ", shape_str(this->shape()),
              " with strides ", shape_str(strides()), " as ", shape_str(shape), "; use reshape() (it copies)");
  Tensor out = make_view(*this, shape, st, offset());
  const Shape in_shape = this->shape();
  record_unary("view", *this, out, [in_shape](const Tensor& g) { return g.reshape(in_shape); });
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), this->shape());
  if (view_strides(this->shape(), strides(), shape).size() == shape.size()) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int s = normalize_dim(start_dim, dim()), e = normalize_dim(end_dim, dim());
  QTUNE_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim, " for a tensor of rank ",
              dim());
  Shape shape(this->shape().begin(), this->shape().begin() + s);
  int64_t merged = 1;
  for (int i = s; i <= e; ++i) merged *= this->shape()[static_cast<size_t>(i)];
  shape.push_back(merged);
  shape.insert(shape.end(), this->shape().begin() + e + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> perm(dim());
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::swap(perm[static_cast<size_t>(normalize_dim(dim0, dim()))],
            perm[static_cast<size_t>(normalize_dim(dim1, dim()))]);
  return permute(perm);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  QTUNE_CHECK(dims.size() == dim(), "permute: ", dims.size(), " dims given for a tensor of rank ", dim());
  Shape shape(dims.size());
  Strides st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = normalize_dim(dims[i], dim());
    QTUNE_CHECK(inverse[static_cast<size_t>(d)] < 0, "permute: dim ", d, " repeated");
    inverse[static_cast<size_t>(d)] = static_cast<int64_t>(i);
    shape[i] = this->shape()[static_cast<size_t>(d)];
    st[i] = strides()[static_cast<size_t>(d)];
  }
  Tensor out = make_view(*this, shape, st, offset());
  record_unary("permute", *this, out, [inverse](const Tensor& g) { return g.permute(inverse); });
  return out;
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  const int d = normalize_dim(dim, this->dim());
  const int64_t n = shape()[static_cast<size_t>(d)];
  if (start < 0) start += n;
  QTUNE_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ", start + length,
              ") is out of range for dim ", d, " of size ", n);
  Shape shape = this->shape();
  shape[static_cast<size_t>(d)] = length;
  Tensor out = make_view(*this, shape, strides(), offset() + start * strides()[static_cast<size_t>(d)]);
  const Shape in_shape = this->shape();
  record_unary("narrow", *this, out, [in_shape, d, start, length](const Tensor& g) {
    Tensor full = Tensor::zeros(in_shape, g.dtype(), g.device());
    full.narrow(d, start, length).copy_(g);
    return full;
  });
  return out;
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  const int d = normalize_dim(dim, this->dim());
  const int64_t n = shape()[static_cast<size_t>(d)];
  if (index < 0) index += n;
  QTUNE_CHECK(index >= 0 && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  QTUNE_CHECK(target.size() >= dim(), "expand: cannot expand shape ", shape_str(shape()), " to ", shape_str(target));
  const size_t lead = target.size() - dim();
  Shape shape(target.size());
  Strides st(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      QTUNE_CHECK(target[i] >= 0, "expand: bad size ", target[i]);
      shape[i] = target[i];
      continue;
    }
    const int64_t have = this->shape()[i - lead];
    const int64_t want = target[i] == -1 ? have : target[i];
    QTUNE_CHECK(have == want || have == 1, "expand: cannot expand shape ", shape_str(this->shape()), " to ",
                shape_str(target));
    shape[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, shape, st, offset());
  const Shape in_shape = this->shape();
  record_unary("expand", *this, out, [in_shape](const Tensor& g) { return sum_to(g, in_shape); });
  return out;
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  const int d = normalize_dim(dim, this->dim() + 1);
  Shape shape = this->shape();
  shape.insert(shape.begin() + d, 1);
  return view(shape);
}

Tensor Tensor::squeeze(int64_t dim) const {
  const int d = normalize_dim(dim, this->dim());
  QTUNE_CHECK(shape()[static_cast<size_t>(d)] == 1, "squeeze: dim ", d, " has size ", shape()[static_cast<size_t>(d)]);
  Shape shape = this->shape();
  shape.erase(shape.begin() + d);
  return view(shape);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  record_unary("clone", *this, out, [](const Tensor& g) { return g; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_(*this);
  const DType source = dtype();
  if (is_floating(target) && is_floating(source))
    record_unary("to_dtype", *this, out, [source](const Tensor& g) { return g.to(source); });
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), target);
  if (out.nbytes() > 0) {
    if (target.is_cpu()) {
      backend_for(src.device()).copy_to_host(src, out.data_ptr());
    } else if (src.device().is_cpu()) {
      backend_for(target).copy_from_host(src.data_ptr(), out);
    } else {
      Tensor staged = src.detach().to(Device::cpu());
      backend_for(target).copy_from_host(staged.data_ptr(), out);
    }
  }
  const Device source = device();
  record_unary("to_device", *this, out, [source](const Tensor& g) { return g.to(source); });
  return out;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

// ---- autograd -----------------------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked().requires_grad; }

Tensor& Tensor::requires_grad_(bool value) {
  QTUNE_CHECK(is_leaf(), "requires_grad_ on a non-leaf tensor; detach() it first");
  QTUNE_CHECK(!value || is_floating(dtype()), "only floating tensors can require grad, this one is ",
              dtype_name(dtype()));
  impl_->requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const { return checked().grad_fn == nullptr; }
Tensor Tensor::grad() const { return Tensor(checked().grad); }

void Tensor::set_grad(const Tensor& grad) const {
  QTUNE_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad: gradient shape ", shape_str(grad.shape()),
              " for a tensor of shape ", shape_str(shape()));
  impl_->grad = grad.impl_ptr();
}

void Tensor::zero_grad() const { checked(), impl_->grad.reset(); }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked().grad_fn; }

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::backward({*this}, {grad}, retain_graph);
}

// ---- in place -----------------------------------------------------------------------------------

void Tensor::copy_(const Tensor& src) const {
  QTUNE_CHECK(src.shape() == shape(), "copy_: source shape ", shape_str(src.shape()), " does not match ",
              shape_str(shape()));
  if (numel() == 0) return;
  NoGradGuard no_grad;
  if (src.device().is_cpu() && !device().is_cpu() && is_contiguous()) {
    // Converted on the host and uploaded straight into this tensor: the device holds no staging copy (a
    // loader filling a GPU model needs no room beyond the model).
    const Tensor host = (src.dtype() == dtype() ? src : src.to(dtype())).contiguous();
    backend_for(device()).copy_from_host(host.data_ptr(), *this);
    return;
  }
  const Tensor staged = src.device() == device() ? src : src.to(device());
  backend_for(device()).copy(staged, *this);
}

void Tensor::fill_(double value) const {
  if (numel() > 0) backend_for(device()).fill(*this, value);
}

void Tensor::set_data(const Tensor& other) const {
  QTUNE_CHECK(other.shape() == shape() && other.dtype() == dtype(), "set_data: a ", dtype_name(other.dtype()), " ",
              shape_str(other.shape()), " tensor cannot stand in for a ", dtype_name(dtype()), " ", shape_str(shape()),
              " one");
  impl_->storage = other.storage();
  impl_->strides = other.strides();
  impl_->offset = other.offset();
}

// ---- printing -----------------------------------------------------------------------------------

namespace {
// Writes element `i` (row-major) of the tensor being printed.
using ElementPrinter = std::function<void(std::ostream&, size_t)>;

void print_values(std::ostream& out, const ElementPrinter& element, const Shape& shape, size_t dim, int64_t base) {
  const int64_t inner = numel_of(Shape(shape.begin() + static_cast<long>(dim) + 1, shape.end()));
  const int64_t n = shape[dim];
  const bool elide = n > 6;
  out << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (elide && i == 3) {
      out << (dim + 1 == shape.size() ? "..., " : "...,\n ");
      i = n - 3;
    }
    if (dim + 1 == shape.size())
      element(out, static_cast<size_t>(base + i));
    else
      print_values(out, element, shape, dim + 1, base + i * inner);
    if (i + 1 < n) out << (dim + 1 == shape.size() ? ", " : ",\n ");
  }
  out << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str()
      << (requires_grad() ? ", requires_grad" : "") << ")\n";
  // Integers are read as int64: through double, ids above 2^53 would print wrong.
  std::vector<int64_t> ints;
  std::vector<double> floats;
  ElementPrinter element;
  if (dtype() == DType::boolean) {
    ints = to_vector<int64_t>();
    element = [&](std::ostream& o, size_t i) { o << (ints[i] != 0 ? "true" : "false"); };
  } else if (is_integral(dtype())) {
    ints = to_vector<int64_t>();
    element = [&](std::ostream& o, size_t i) { o << ints[i]; };
  } else {
    floats = to_vector<double>();
    element = [&](std::ostream& o, size_t i) { o << floats[i]; };
  }
  if (dim() == 0)
    element(out, 0);
  else
    print_values(out, element, shape(), 0, 0);
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& t) { return out << t.str(); }

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  QTUNE_CHECK(grad.dim() >= shape.size(), "sum_to: cannot reduce ", shape_str(grad.shape()), " to ", shape_str(shape));
  Shape keep(grad.dim() - shape.size(), 1);
  keep.insert(keep.end(), shape.begin(), shape.end());
  Tensor out = Tensor::empty(keep, grad.dtype(), grad.device());
  backend_for(grad.device()).reduce(ReduceOp::sum, grad, out);
  return out.view(shape);
}

}  // namespace qtune
