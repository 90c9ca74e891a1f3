// Philox fills and dropout. Element i depends only on (seed, offset, i) through the shared
// engine/numerics/philox.h, so a GPU stream equals the CPU stream of the same call.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/philox.h"

namespace qtune::gpu {
namespace {

// One Philox block yields the uniforms of elements 4j .. 4j+3 (the stream layout of philox.h), so
// each thread computes a block once and calls visit(i, u) for its four elements.
template <class Visit>
__device__ __forceinline__ void for_each_uniform(int64_t n, uint64_t seed, uint64_t offset, int digits, Visit visit) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t j = thread_index(); j < blocks; j += thread_count()) {
    const numerics::Philox4 r = numerics::philox4x32(offset + static_cast<uint64_t>(j), seed);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * j + w;
      if (i >= n) break;
      visit(i, numerics::uniform_from_bits(r.v[w], digits));
    }
  }
}

template <class T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, acc_t<T> low, acc_t<T> high) {
  for_each_uniform(n, seed, offset, numerics::kUniformDigits<T>,
                   [&](int64_t i, float u) { store(out + i, low + (high - low) * static_cast<acc_t<T>>(u)); });
}

template <class T>
__global__ void normal_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, acc_t<T> mean, acc_t<T> std) {
  using A = acc_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const A z = numerics::philox_normal(seed, offset, static_cast<uint64_t>(i));
    store(out + i, mean + std * z);
  }
}

template <class T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n, double p, uint64_t seed, uint64_t offset, acc_t<T> scale) {
  for_each_uniform(n, seed, offset, numerics::kUniformDigitsF32,
                   [&](int64_t i, float u) { store(y + i, u >= p ? load(x + i) * scale : acc_t<T>(0)); });
}

void check_contiguous(const char* kernel, const Tensor& t, const char* what) {
  QTUNE_CHECK(t.is_contiguous(), kernel, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
}

}  // namespace

void CudaBackend::fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double low, double high) {
  check_contiguous("fill_uniform", out, "out");
  check_on_device("fill_uniform", {&out});
  const int64_t n = out.numel();
  if (n == 0) return;
  activate();
  dispatch_float(out.dtype(), "fill_uniform", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<uniform_kernel<T>>(LaunchShape{blocks_for((n + 3) / 4), kThreads, 0, stream_},
                              static_cast<T*>(out.data_ptr()), n, seed, offset, static_cast<A>(low),
                              static_cast<A>(high));
  });
}

void CudaBackend::fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  check_contiguous("fill_normal", out, "out");
  check_on_device("fill_normal", {&out});
  const int64_t n = out.numel();
  if (n == 0) return;
  activate();
  dispatch_float(out.dtype(), "fill_normal", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<normal_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, static_cast<T*>(out.data_ptr()), n, seed,
                             offset, static_cast<A>(mean), static_cast<A>(std));
  });
}

void CudaBackend::dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, const Tensor& y) {
  check_contiguous("dropout", x, "x");
  check_contiguous("dropout", y, "y");
  check_on_device("dropout", {&x, &y});
  QTUNE_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  QTUNE_CHECK(x.dtype() == y.dtype() && x.shape() == y.shape(), "dropout: x and y differ in dtype or shape");
  const int64_t n = x.numel();
  if (n == 0) return;
  activate();
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<dropout_kernel<T>>(LaunchShape{blocks_for((n + 3) / 4), kThreads, 0, stream_},
                              static_cast<const T*>(x.data_ptr()), static_cast<T*>(y.data_ptr()), n, p, seed, offset,
                              static_cast<A>(1.0 / (1.0 - p)));
  });
}

}  // namespace qtune::gpu
