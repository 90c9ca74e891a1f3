#pragma once
// Loading and storing one element of a floating storage type through the scalar numerics, so a bf16
// rounds identically in CPU and CUDA kernels; and the host-side dispatch from a DType to the storage
// type the kernels are instantiated for.
#include <type_traits>

#include "engine/check.h"
#include "engine/dtype.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

// Arithmetic type for a storage type: f64 stays f64, every other float computes in f32.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
QTUNE_HD acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16_t>)
    return bf16_bits_to_f32(p->bits);
  else if constexpr (std::is_same_v<T, f16_t>)
    return f16_bits_to_f32(p->bits);
  else
    return *p;
}

template <class T, class V>
QTUNE_HD void store(T* p, V v) {
  if constexpr (std::is_same_v<T, bf16_t>)
    p->bits = f32_to_bf16_bits(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f16_t>)
    p->bits = f32_to_f16_bits(static_cast<float>(v));
  else
    *p = static_cast<T>(v);
}

// Calls f(T{}) with T the storage type of a floating dtype that kernels compute on (host only).
template <class F>
decltype(auto) dispatch_float(DType t, const char* kernel, F&& f) {
  switch (t) {
    case DType::f64:
      return f(double{});
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(bf16_t{});
    case DType::f16:
      return f(f16_t{});
    default:
      QTUNE_FAIL(kernel, ": dtype ", dtype_name(t), " is not supported (expected f64, f32, bf16 or f16)");
  }
}

}  // namespace qtune::numerics
