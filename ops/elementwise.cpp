#include "ops/elementwise.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {
namespace {

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  QTUNE_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " vs ", dtype_name(b.dtype()),
              "); cast one side first");
  QTUNE_CHECK(a.device() == b.device(), op, ": devices differ (", a.device().str(), " vs ", b.device().str(), ")");
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(a.device()).binary(op, a.detach().expand(shape), b.detach().expand(shape), out);
  return out;
}

Tensor unary_forward(UnaryOp op, const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(op, x, out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_pair("add", a, b);
  Tensor out = binary_forward(BinaryOp::add, a, b);
  if (autograd::needs_grad({a, b}))
    autograd::record("add", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
    });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  check_pair("sub", a, b);
  Tensor out = binary_forward(BinaryOp::sub, a, b);
  if (autograd::needs_grad({a, b}))
    autograd::record("sub", {a, b}, {out}, [sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
    });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_pair("mul", a, b);
  Tensor out = binary_forward(BinaryOp::mul, a, b);
  if (autograd::needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("mul", {a, b}, {out}, [a = a.detach(), b = b.detach(), ga, gb](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{ga ? sum_to(mul(g[0], b), a.shape()) : Tensor(),
                                 gb ? sum_to(mul(g[0], a), b.shape()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  check_pair("div", a, b);
  Tensor out = binary_forward(BinaryOp::div, a, b);
  if (autograd::needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("div", {a, b}, {out},
                     [b = b.detach(), out = out.detach(), ga, gb, sa = a.shape()](const std::vector<Tensor>& g) {
                       Tensor ga_full = div(g[0], b);  // d(a/b)/da = 1/b ; d/db = -out/b
                       return std::vector<Tensor>{ga ? sum_to(ga_full, sa) : Tensor(),
                                                  gb ? sum_to(neg(mul(ga_full, out)), b.shape()) : Tensor()};
                     });
  }
  return out;
}

Tensor neg(const Tensor& x) { return scale(x, -1.0); }

Tensor exp(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::exp, x);
  if (autograd::needs_grad({x}))
    autograd::record("exp", {x}, {out},
                     [y = out.detach()](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], y)}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::log, x);
  if (autograd::needs_grad({x}))
    autograd::record("log", {x}, {out},
                     [x = x.detach()](const std::vector<Tensor>& g) { return std::vector<Tensor>{div(g[0], x)}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::sqrt, x);
  if (autograd::needs_grad({x}))
    autograd::record("sqrt", {x}, {out}, [y = out.detach()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{div(scale(g[0], 0.5), y)};
    });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::rsqrt, x);
  if (autograd::needs_grad({x}))
    autograd::record("rsqrt", {x}, {out}, [y = out.detach()](const std::vector<Tensor>& g) {
      // d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
      return std::vector<Tensor>{mul(g[0], scale(pow(y, 3.0), -0.5))};
    });
  return out;
}

Tensor square(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::square, x);
  if (autograd::needs_grad({x}))
    autograd::record("square", {x}, {out}, [x = x.detach()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], scale(x, 2.0))};
    });
  return out;
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).pow_scalar(x, exponent, out);
  if (autograd::needs_grad({x}))
    autograd::record("pow", {x}, {out}, [x = x.detach(), exponent](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], scale(pow(x, exponent - 1.0), exponent))};
    });
  return out;
}

Tensor scale(const Tensor& x, double alpha) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).affine(x, alpha, 0.0, out);
  if (autograd::needs_grad({x}))
    autograd::record("scale", {x}, {out},
                     [alpha](const std::vector<Tensor>& g) { return std::vector<Tensor>{scale(g[0], alpha)}; });
  return out;
}

Tensor add_scalar(const Tensor& x, double value) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).affine(x, 1.0, value, out);
  if (autograd::needs_grad({x}))
    autograd::record("add_scalar", {x}, {out}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

}  // namespace qtune::ops

namespace qtune {
Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
Tensor operator-(const Tensor& x) { return ops::neg(x); }
Tensor operator*(const Tensor& x, double alpha) { return ops::scale(x, alpha); }
Tensor operator*(double alpha, const Tensor& x) { return ops::scale(x, alpha); }
Tensor operator+(const Tensor& x, double value) { return ops::add_scalar(x, value); }
}  // namespace qtune
