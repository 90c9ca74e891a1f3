#pragma once
// Differentiable elementwise ops. Binary ops broadcast (NumPy rules); both inputs must share a
// dtype and device (cast explicitly with Tensor::to or ops::cast).
#include "engine/tensor.h"

namespace qtune::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor scale(const Tensor& x, double alpha);       // alpha * x
Tensor add_scalar(const Tensor& x, double value);  // x + value

}  // namespace qtune::ops

namespace qtune {
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator*(const Tensor& x, double alpha);
Tensor operator*(double alpha, const Tensor& x);
Tensor operator+(const Tensor& x, double value);
}  // namespace qtune
