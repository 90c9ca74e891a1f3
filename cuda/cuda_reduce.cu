// Reductions over any set of dims on CUDA. x is split into the dims out keeps and the dims it reduces,
// each walked by an Indexer, so any strided view reduces in place. Accumulates in f64 as the CPU does
// (cpu/cpu_reduce.cpp); sums run in another order, which f64 makes invisible after rounding to f32.
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"

namespace qtune::gpu {
namespace {

constexpr int kReduceThreads = 256;

// One ReduceOp: its start value, what an element contributes and how two partial results combine.
// A NaN anywhere makes max, min and amax NaN, whatever the order of combination.
struct Reducer {
  ReduceOp op;
  __device__ double init() const { return op == ReduceOp::max ? -INFINITY : op == ReduceOp::min ? INFINITY : 0.0; }
  __device__ double element(double v) const { return op == ReduceOp::amax ? std::fabs(v) : v; }
  __device__ double operator()(double a, double b) const {
    if (op == ReduceOp::sum) return a + b;
    if (isnan(a)) return a;
    if (isnan(b)) return b;
    return op == ReduceOp::min ? (b < a ? b : a) : (b > a ? b : a);
  }
};

// Few elements per output: one thread per output, reading them in order.
template <class T>
__global__ void reduce_per_thread(const T* x, T* out, int64_t outputs, int64_t count, Indexer<1> kept,
                                  Indexer<1> reduced, Reducer r) {
  for (int64_t o = thread_index(); o < outputs; o += thread_count()) {
    int64_t base[1], off[1];
    kept.offsets(o, base);
    double acc = r.init();
    for (int64_t i = 0; i < count; ++i) {
      reduced.offsets(i, off);
      acc = r(acc, r.element(load(x + base[0] + off[0])));
    }
    store(out + o, acc);
  }
}

// Many elements per output: one block per output, threads striding over them, then a block reduction.
template <class T>
__global__ void reduce_per_block(const T* x, T* out, int64_t outputs, int64_t count, Indexer<1> kept,
                                 Indexer<1> reduced, Reducer r) {
  QTUNE_SHARED(double, partials, kReduceThreads / 32);
  for (int64_t o = blockIdx.x; o < outputs; o += gridDim.x) {
    int64_t base[1], off[1];
    kept.offsets(o, base);
    double acc = r.init();
    for (int64_t i = threadIdx.x; i < count; i += kReduceThreads) {
      reduced.offsets(i, off);
      acc = r(acc, r.element(load(x + base[0] + off[0])));
    }
    acc = block_all_reduce<kReduceThreads>(acc, r, partials);
    if (threadIdx.x == 0) store(out + o, acc);
  }
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  check_reduce_args(x, out);
  Shape kept_shape, reduced_shape;
  Strides kept_strides, reduced_strides;
  int64_t count = 1;
  for (size_t d = 0; d < x.dim(); ++d) {
    const bool reduced = out.shape()[d] != x.shape()[d];
    (reduced ? reduced_shape : kept_shape).push_back(x.shape()[d]);
    (reduced ? reduced_strides : kept_strides).push_back(x.strides()[d]);
    if (reduced) count *= x.shape()[d];
  }
  const int64_t outputs = out.numel();
  if (outputs == 0) return;
  const Indexer<1> kept = make_indexer<1>("reduce", kept_shape, {&kept_strides});
  const Indexer<1> reduced = make_indexer<1>("reduce", reduced_shape, {&reduced_strides});
  activate();
  dispatch_float(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    if (count >= kReduceThreads)
      launch<reduce_per_block<T>>(LaunchShape{blocks_for_rows(outputs), kReduceThreads, 0, stream_}, px, po, outputs,
                                  count, kept, reduced, Reducer{op});
    else
      launch<reduce_per_thread<T>>(LaunchShape{blocks_for(outputs), kThreads, 0, stream_}, px, po, outputs, count, kept,
                                   reduced, Reducer{op});
  });
}

}  // namespace qtune::gpu
