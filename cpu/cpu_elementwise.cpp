// Unary, binary (broadcast through stride-0 views), affine and power kernels.
#include <cmath>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

void check_same(const char* kernel, const Tensor& a, const Tensor& out) {
  QTUNE_CHECK(a.dtype() == out.dtype(), kernel, ": input dtype ", dtype_name(a.dtype()), " differs from output ",
              dtype_name(out.dtype()));
  QTUNE_CHECK(a.shape() == out.shape(), kernel, ": input shape ", shape_str(a.shape()), " differs from output ",
              shape_str(out.shape()), " (expand inputs to the output shape first)");
}

// Applies f(acc value) -> acc value elementwise from x to out.
template <class F>
void map_unary(const char* kernel, const Tensor& x, const Tensor& out, F&& f) {
  check_same(kernel, x, out);
  dispatch_float(out.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    const T* in = ptr<T>(x);
    T* o = ptr<T>(out);
    if (x.is_contiguous() && out.is_contiguous()) {
      parallel_for(out.numel(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) store(o + i, f(load(in + i)));
      });
      return;
    }
    for_each_run<2>(out.shape(), {x.strides(), out.strides()}, [&](auto off, int64_t n, auto inner) {
      for (int64_t i = 0; i < n; ++i) store(o + off[1] + i * inner[1], f(load(in + off[0] + i * inner[0])));
    });
  });
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  map_unary("unary", x, out, [op](auto v) { return numerics::apply_unary(op, v); });
}

void CpuBackend::affine(const Tensor& x, double alpha, double beta, const Tensor& out) {
  map_unary("affine", x, out, [alpha, beta](auto v) {
    using A = decltype(v);
    return static_cast<A>(alpha) * v + static_cast<A>(beta);
  });
}

void CpuBackend::pow_scalar(const Tensor& x, double exponent, const Tensor& out) {
  map_unary("pow_scalar", x, out, [exponent](auto v) {
    using A = decltype(v);
    return static_cast<A>(std::pow(v, static_cast<A>(exponent)));
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_same("binary", a, out);
  check_same("binary", b, out);
  dispatch_float(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = ptr<T>(a);
    const T* pb = ptr<T>(b);
    T* o = ptr<T>(out);
    if (a.is_contiguous() && b.is_contiguous() && out.is_contiguous()) {
      // The op is fixed outside the loop, so that the compiler vectorizes load, op and rounding together: the
      // residual adds and gradient sums of a bf16 step run at memory speed (a switch per element does not).
      auto dense = [&](auto f) {
        parallel_for(out.numel(), 1 << 15, [&](int64_t s, int64_t e) {
          for (int64_t i = s; i < e; ++i) store(o + i, f(load(pa + i), load(pb + i)));
        });
      };
      switch (op) {
        case BinaryOp::add:
          return dense([](auto x, auto y) { return numerics::apply_binary(BinaryOp::add, x, y); });
        case BinaryOp::sub:
          return dense([](auto x, auto y) { return numerics::apply_binary(BinaryOp::sub, x, y); });
        case BinaryOp::mul:
          return dense([](auto x, auto y) { return numerics::apply_binary(BinaryOp::mul, x, y); });
        default:
          return dense([op](auto x, auto y) { return numerics::apply_binary(op, x, y); });
      }
    }
    for_each_run<3>(out.shape(), {a.strides(), b.strides(), out.strides()}, [&](auto off, int64_t n, auto inner) {
      for (int64_t i = 0; i < n; ++i)
        store(o + off[2] + i * inner[2],
              numerics::apply_binary(op, load(pa + off[0] + i * inner[0]), load(pb + off[1] + i * inner[1])));
    });
  });
}

}  // namespace qtune::cpu
