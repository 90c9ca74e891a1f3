#pragma once
// Shared helpers of the CPU kernels: dtype dispatch, element load/store through the scalar
// numerics, strided iteration and a parallel-for. Kernels never make virtual calls per element.
#include <array>
#include <cstdint>
#include <type_traits>

#include "engine/check.h"
#if defined(_OPENMP)
#include <omp.h>
#endif
#include "engine/numerics/element.h"
#include "engine/numerics/fp8.h"
#include "engine/tensor.h"

namespace qtune::cpu {

using numerics::acc_t;
using numerics::dispatch_float;
using numerics::load;
using numerics::store;

// Any dtype, including integers and fp8 (used by copy).
template <class F>
decltype(auto) dispatch_any(DType t, F&& f) {
  switch (t) {
    case DType::f64:
      return f(double{});
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(bf16_t{});
    case DType::f16:
      return f(f16_t{});
    case DType::f8_e4m3:
      return f(f8_e4m3_t{});
    case DType::f8_e5m2:
      return f(f8_e5m2_t{});
    case DType::i64:
      return f(int64_t{});
    case DType::i32:
      return f(int32_t{});
    case DType::i8:
      return f(int8_t{});
    case DType::u8:
      return f(uint8_t{});
    case DType::boolean:
      return f(bool{});
  }
  QTUNE_FAIL("unknown dtype");
}

template <class T>
inline T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

inline void check_contiguous(const char* kernel, const Tensor& t, const char* what) {
  QTUNE_CHECK(t.is_contiguous(), kernel, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
}

// Runs body(begin, end) over [0, n) split across OpenMP threads when n is at least `grain`.
template <class Body>
void parallel_for(int64_t n, int64_t grain, Body&& body) {
  if (n <= 0) return;
#if defined(_OPENMP)
  if (n >= grain * 2) {
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
      const int64_t chunk = (n + threads - 1) / threads;
      const int64_t begin = id * chunk, end = begin + chunk < n ? begin + chunk : n;
      if (begin < end) body(begin, end);
    }
    return;
  }
#endif
  (void)grain;
  body(int64_t{0}, n);
}

// Strided iteration over N operands of one shape: calls body(offsets, count, inner_strides) for
// each run along the (coalesced) innermost dim; offsets and strides are in elements.
template <size_t N, class Body>
void for_each_run(const Shape& shape, const std::array<Strides, N>& strides, Body&& body) {
  // Coalesce adjacent dims that are contiguous with each other in every operand; drop size-1 dims.
  Shape dims;
  std::array<Strides, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !dims.empty();
    for (size_t k = 0; k < N && merge; ++k) merge = st[k].back() == strides[k][d] * shape[d];
    if (merge) {
      dims.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides[k][d];
    } else {
      dims.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
    }
  }
  std::array<int64_t, N> inner{}, offsets{};
  if (dims.empty()) {
    body(offsets, int64_t{1}, inner);
    return;
  }
  const size_t rank = dims.size();
  for (size_t k = 0; k < N; ++k) inner[k] = st[k][rank - 1];
  const int64_t count = dims[rank - 1];
  std::vector<int64_t> index(rank, 0);
  while (true) {
    body(offsets, count, inner);
    size_t d = rank - 1;
    while (d-- > 0) {
      ++index[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += st[k][d];
      if (index[d] < dims[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= st[k][d] * dims[d];
      index[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;
  }
}

}  // namespace qtune::cpu
