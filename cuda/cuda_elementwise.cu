// Unary, binary (broadcast through stride-0 views), affine and power kernels. One generic map
// kernel: a contiguous path with 16-byte loads when every pointer allows it, and a strided path
// (rank <= 8 after merging dims) for views and broadcasts.
#include <cmath>

#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

template <class A>
struct UnaryFn {
  UnaryOp op;
  __device__ __forceinline__ A operator()(const A (&v)[1]) const { return numerics::apply_unary(op, v[0]); }
};

template <class A>
struct BinaryFn {
  BinaryOp op;
  __device__ __forceinline__ A operator()(const A (&v)[2]) const { return numerics::apply_binary(op, v[0], v[1]); }
};

template <class A>
struct AffineFn {
  A alpha, beta;
  __device__ __forceinline__ A operator()(const A (&v)[1]) const { return alpha * v[0] + beta; }
};

template <class A>
struct PowFn {
  A exponent;
  __device__ __forceinline__ A operator()(const A (&v)[1]) const { return std::pow(v[0], exponent); }
};

template <class T, int N>
struct Inputs {
  const T* p[N];
};

template <class T, int N, bool Vectorized, class Fn>
__global__ void map_contiguous(Inputs<T, N> in, T* out, int64_t n, Fn fn) {
  using A = acc_t<T>;
  const int64_t start = thread_index(), step = thread_count();
  int64_t tail = 0;
  if constexpr (Vectorized) {
    constexpr int V = Pack<T>::size;
    const int64_t packs = n / V;
    for (int64_t i = start; i < packs; i += step) {
      Pack<T> x[N];
#pragma unroll
      for (int k = 0; k < N; ++k) x[k] = load_pack(in.p[k], i);
      Pack<T> y;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        A v[N];
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = load(&x[k].v[j]);
        store(&y.v[j], fn(v));
      }
      store_pack(out, i, y);
    }
    tail = packs * V;
  }
  for (int64_t i = tail + start; i < n; i += step) {
    A v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = load(in.p[k] + i);
    store(out + i, fn(v));
  }
}

template <class T, int N, class Fn>
__global__ void map_strided(Inputs<T, N> in, T* out, int64_t n, Indexer<N + 1> ix, Fn fn) {
  using A = acc_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    int64_t off[N + 1];
    ix.offsets(i, off);
    A v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = load(in.p[k] + off[k]);
    store(out + off[N], fn(v));
  }
}

void check_same(const char* kernel, const Tensor& a, const Tensor& out) {
  QTUNE_CHECK(a.dtype() == out.dtype(), kernel, ": input dtype ", dtype_name(a.dtype()), " differs from output ",
              dtype_name(out.dtype()));
  QTUNE_CHECK(a.shape() == out.shape(), kernel, ": input shape ", shape_str(a.shape()), " differs from output ",
              shape_str(out.shape()), " (expand inputs to the output shape first)");
}

template <class T, int N, class Fn>
void run_map(const char* kernel, cudaStream_t stream, const std::array<const Tensor*, N>& ins, const Tensor& out,
             Fn fn) {
  const int64_t n = out.numel();
  if (n == 0) return;
  Inputs<T, N> in;
  bool contiguous = out.is_contiguous(), vectorizable = aligned16(out.data_ptr());
  for (int k = 0; k < N; ++k) {
    in.p[k] = static_cast<const T*>(ins[k]->data_ptr());
    contiguous = contiguous && ins[k]->is_contiguous();
    vectorizable = vectorizable && aligned16(in.p[k]);
  }
  T* o = static_cast<T*>(out.data_ptr());
  if (contiguous && vectorizable) {
    launch<map_contiguous<T, N, true, Fn>>(LaunchShape{blocks_for(n / Pack<T>::size + 1), kThreads, 0, stream}, in, o,
                                           n, fn);
  } else if (contiguous) {
    launch<map_contiguous<T, N, false, Fn>>(LaunchShape{blocks_for(n), kThreads, 0, stream}, in, o, n, fn);
  } else {
    std::array<const Strides*, N + 1> strides;
    for (int k = 0; k < N; ++k) strides[k] = &ins[k]->strides();
    strides[N] = &out.strides();
    const Indexer<N + 1> ix = make_indexer<N + 1>(kernel, out.shape(), strides);
    launch<map_strided<T, N, Fn>>(LaunchShape{blocks_for(n), kThreads, 0, stream}, in, o, n, ix, fn);
  }
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  check_same("unary", x, out);
  check_on_device("unary", {&x, &out});
  activate();
  dispatch_float(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    run_map<T, 1>("unary", stream_, {&x}, out, UnaryFn<acc_t<T>>{op});
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_same("binary", a, out);
  check_same("binary", b, out);
  check_on_device("binary", {&a, &b, &out});
  activate();
  dispatch_float(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    run_map<T, 2>("binary", stream_, {&a, &b}, out, BinaryFn<acc_t<T>>{op});
  });
}

void CudaBackend::affine(const Tensor& x, double alpha, double beta, const Tensor& out) {
  check_same("affine", x, out);
  check_on_device("affine", {&x, &out});
  activate();
  dispatch_float(out.dtype(), "affine", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    run_map<T, 1>("affine", stream_, {&x}, out, AffineFn<A>{static_cast<A>(alpha), static_cast<A>(beta)});
  });
}

void CudaBackend::pow_scalar(const Tensor& x, double exponent, const Tensor& out) {
  check_same("pow_scalar", x, out);
  check_on_device("pow_scalar", {&x, &out});
  activate();
  dispatch_float(out.dtype(), "pow_scalar", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    run_map<T, 1>("pow_scalar", stream_, {&x}, out, PowFn<A>{static_cast<A>(exponent)});
  });
}

}  // namespace qtune::gpu
