#pragma once
// Per-element math of the elementwise kernels, written once for the CPU and CUDA backends (and the
// enums that name the operations in the Backend interface).
#include <cmath>
#include <cstdint>

#include "engine/numerics/hd.h"

namespace qtune {

enum class UnaryOp : uint8_t { neg, exp, log, sqrt, rsqrt, abs, square, reciprocal, sigmoid, silu, tanh };
// silu_grad(x, dy) = dy * d silu(x) / dx
enum class BinaryOp : uint8_t { add, sub, mul, div, maximum, minimum, silu_grad };

namespace numerics {

template <class A>
QTUNE_HD A apply_unary(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::rsqrt:
      return A(1) / std::sqrt(x);
    case UnaryOp::abs:
      return std::fabs(x);
    case UnaryOp::square:
      return x * x;
    case UnaryOp::reciprocal:
      return A(1) / x;
    case UnaryOp::sigmoid:
      return A(1) / (A(1) + std::exp(-x));
    case UnaryOp::silu:
      return x / (A(1) + std::exp(-x));
    case UnaryOp::tanh:
      return std::tanh(x);
  }
  return x;
}

template <class A>
QTUNE_HD A apply_binary(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    // A NaN in `a` propagates.
    case BinaryOp::maximum:
      return a > b || std::isnan(a) ? a : b;
    case BinaryOp::minimum:
      return a < b || std::isnan(a) ? a : b;
    case BinaryOp::silu_grad: {
      const A s = A(1) / (A(1) + std::exp(-a));
      return b * s * (A(1) + a * (A(1) - s));
    }
  }
  return a;
}

}  // namespace numerics
}  // namespace qtune
