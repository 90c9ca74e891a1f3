// Flash-style attention on CUDA, forward and backward, for every floating dtype: one warp per query
// row (or per key row in the dK/dV pass), keys or queries visited in tiles of 32 with one per lane,
// the head dim spread over the lanes. The forward keeps the online softmax (running max, running sum,
// rescaled accumulator) and writes only out and the log-sum-exp; the backward recomputes the
// probabilities from lse in two race-free passes, as the CPU does (cpu/cpu_attention.cpp): dQ per
// query row, dK and dV per key row summed over the query heads of its group. No [Tq, Tk] matrix, no
// atomics, and the result never depends on scheduling. Sums run in another order than the CPU's. bf16
// and f16 with head dims of whole 16-wide tiles up to 128 take the tensor-core kernels instead
// (cuda_attention_wmma.cu); f32 and f64 stay here for the gradient checks.
#include <cmath>
#include <type_traits>

#include "cuda/attention_dims.cuh"
#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"

namespace qtune::gpu {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;  // head-dim elements each lane owns: lane + 32 * u

// dot(a, b) over the head dim: a in shared memory (already in A), b a row in global memory.
template <class T>
__device__ acc_t<T> row_dot(const acc_t<T>* a, const T* b, int64_t d) {
  acc_t<T> sum = 0;
  for (int64_t x = 0; x < d; ++x) sum += a[x] * acc_t<T>(load(b + x));
  return sum;
}

// Copies a row of the head dim into the warp's shared memory, converted to A.
template <class T>
__device__ void stage_row(const T* src, int64_t d, acc_t<T>* dst) {
  for (int64_t x = threadIdx.x % 32; x < d; x += 32) dst[x] = load(src + x);
  __syncwarp();
}

// Each warp's share of the block's dynamic shared memory: `rows` head-dim rows of A.
template <class A>
__device__ A* warp_rows(A* shared, int rows, int64_t d) {
  return shared + (threadIdx.x / 32) * rows * d;
}

template <class T>
__global__ void attention_forward_kernel(const T* q, const T* k, const T* v, T* out, acc_t<T>* lse, AttentionDims dm,
                                         acc_t<T> scale) {
  using A = acc_t<T>;
  QTUNE_DYNAMIC_SHARED(A, shared);
  A* q_row = warp_rows(shared, 1, dm.d);
  const int lane = threadIdx.x % 32;
  const int64_t rows = dm.batch * dm.hq * dm.tq;
  for (int64_t row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t i = row % dm.tq, h = (row / dm.tq) % dm.hq, b = row / (dm.tq * dm.hq), hk = h / dm.group;
    __syncwarp();  // the previous row's readers are done with q_row
    stage_row(q + dm.q_row(b, h, i), dm.d, q_row);
    A m = -INFINITY, l = 0, acc[kPerLane] = {};
    const int64_t key_end = dm.key_end(i);
    for (int64_t j0 = 0; j0 < key_end; j0 += 32) {
      const int64_t j = j0 + lane;
      const A s = j < key_end ? scale * row_dot(q_row, k + dm.k_row(b, hk, j), dm.d) : A(-INFINITY);
      const A tile_max = warp_all_reduce(s, MaxOp<A>{});
      const A m_new = tile_max > m ? tile_max : m;
      if (m_new == -INFINITY) continue;  // no visible key yet: contributes nothing
      // Rescale what was accumulated under the old max (exp(-inf) = 0 on the first tile).
      const A alpha = std::exp(m - m_new);
      const A p = std::exp(s - m_new);
      l = l * alpha + warp_all_reduce(p, SumOp<A>{});
      m = m_new;
      const int64_t tile = key_end - j0 < 32 ? key_end - j0 : 32;
      for (int u = 0; u < kPerLane; ++u) acc[u] *= alpha;
      for (int64_t t = 0; t < tile; ++t) {
        const A pt = __shfl_sync(0xffffffffu, p, static_cast<int>(t));
        const T* vr = v + dm.k_row(b, hk, j0 + t);
        for (int u = 0; u < kPerLane; ++u)
          if (lane + 32 * u < dm.d) acc[u] += pt * A(load(vr + lane + 32 * u));
      }
    }
    const A inv = l > 0 ? A(1) / l : A(0);
    T* o = out + dm.q_row(b, h, i);
    for (int u = 0; u < kPerLane; ++u)
      if (lane + 32 * u < dm.d) store(o + lane + 32 * u, acc[u] * inv);
    if (lane == 0) lse[dm.lse_at(b, h, i)] = l > 0 ? m + std::log(l) : A(-INFINITY);
  }
}

// delta[b, h, i] = sum over the head dim of grad_out * out, one warp per query row.
template <class T>
__global__ void attention_delta_kernel(const T* grad_out, const T* out, acc_t<T>* delta, AttentionDims dm) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % 32;
  const int64_t rows = dm.batch * dm.hq * dm.tq;
  for (int64_t row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t i = row % dm.tq, h = (row / dm.tq) % dm.hq, b = row / (dm.tq * dm.hq);
    const int64_t base = dm.q_row(b, h, i);
    A sum = 0;
    for (int64_t x = lane; x < dm.d; x += 32) sum += A(load(grad_out + base + x)) * A(load(out + base + x));
    sum = warp_all_reduce(sum, SumOp<A>{});
    if (lane == 0) delta[dm.lse_at(b, h, i)] = sum;
  }
}

// The gradient of one score: ds = P * (dP - delta) with P = exp(s - lse) (0 when the query sees no key).
template <class A>
__device__ A score_grad(A s, A dp, A row_lse, A row_delta) {
  const A p = row_lse == A(-INFINITY) ? A(0) : std::exp(s - row_lse);
  return p * (dp - row_delta);
}

// dQ = scale * sum_j ds_j k_j, one warp per query row.
template <class T>
__global__ void attention_grad_q_kernel(const T* grad_out, const T* q, const T* k, const T* v, const acc_t<T>* lse,
                                        const acc_t<T>* delta, T* grad_q, AttentionDims dm, acc_t<T> scale) {
  using A = acc_t<T>;
  QTUNE_DYNAMIC_SHARED(A, shared);
  A* q_row = warp_rows(shared, 2, dm.d);
  A* g_row = q_row + dm.d;
  const int lane = threadIdx.x % 32;
  const int64_t rows = dm.batch * dm.hq * dm.tq;
  for (int64_t row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t i = row % dm.tq, h = (row / dm.tq) % dm.hq, b = row / (dm.tq * dm.hq), hk = h / dm.group;
    __syncwarp();
    stage_row(q + dm.q_row(b, h, i), dm.d, q_row);
    stage_row(grad_out + dm.q_row(b, h, i), dm.d, g_row);
    const A row_lse = lse[dm.lse_at(b, h, i)], row_delta = delta[dm.lse_at(b, h, i)];
    A acc[kPerLane] = {};
    const int64_t key_end = dm.key_end(i);
    for (int64_t j0 = 0; j0 < key_end; j0 += 32) {
      const int64_t j = j0 + lane;
      A ds = 0;
      if (j < key_end)
        ds = score_grad(scale * row_dot(q_row, k + dm.k_row(b, hk, j), dm.d),
                        row_dot(g_row, v + dm.k_row(b, hk, j), dm.d), row_lse, row_delta);
      const int64_t tile = key_end - j0 < 32 ? key_end - j0 : 32;
      for (int64_t t = 0; t < tile; ++t) {
        const A dst = __shfl_sync(0xffffffffu, ds, static_cast<int>(t));
        const T* kr = k + dm.k_row(b, hk, j0 + t);
        for (int u = 0; u < kPerLane; ++u)
          if (lane + 32 * u < dm.d) acc[u] += dst * A(load(kr + lane + 32 * u));
      }
    }
    T* gq = grad_q + dm.q_row(b, h, i);
    for (int u = 0; u < kPerLane; ++u)
      if (lane + 32 * u < dm.d) store(gq + lane + 32 * u, scale * acc[u]);
  }
}

// dV = sum_i P_i dO_i and dK = scale * sum_i ds_i q_i over every query head of the group, one warp per
// key row.
template <class T>
__global__ void attention_grad_kv_kernel(const T* grad_out, const T* q, const T* k, const T* v, const acc_t<T>* lse,
                                         const acc_t<T>* delta, T* grad_k, T* grad_v, AttentionDims dm,
                                         acc_t<T> scale) {
  using A = acc_t<T>;
  QTUNE_DYNAMIC_SHARED(A, shared);
  A* k_row = warp_rows(shared, 2, dm.d);
  A* v_row = k_row + dm.d;
  const int lane = threadIdx.x % 32;
  const int64_t rows = dm.batch * dm.hkv * dm.tk;
  for (int64_t row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t j = row % dm.tk, hk = (row / dm.tk) % dm.hkv, b = row / (dm.tk * dm.hkv);
    __syncwarp();
    stage_row(k + dm.k_row(b, hk, j), dm.d, k_row);
    stage_row(v + dm.k_row(b, hk, j), dm.d, v_row);
    A dk[kPerLane] = {}, dv[kPerLane] = {};
    for (int64_t h = hk * dm.group; h < (hk + 1) * dm.group; ++h)
      for (int64_t i0 = dm.first_query(j); i0 < dm.tq; i0 += 32) {
        const int64_t i = i0 + lane;
        A p = 0, ds = 0;
        if (i < dm.tq) {
          const A row_lse = lse[dm.lse_at(b, h, i)];
          const A s = scale * row_dot(k_row, q + dm.q_row(b, h, i), dm.d);
          p = row_lse == A(-INFINITY) ? A(0) : std::exp(s - row_lse);
          ds = score_grad(s, row_dot(v_row, grad_out + dm.q_row(b, h, i), dm.d), row_lse, delta[dm.lse_at(b, h, i)]);
        }
        const int64_t tile = dm.tq - i0 < 32 ? dm.tq - i0 : 32;
        for (int64_t t = 0; t < tile; ++t) {
          const A pt = __shfl_sync(0xffffffffu, p, static_cast<int>(t));
          const A dst = __shfl_sync(0xffffffffu, ds, static_cast<int>(t));
          const T* qr = q + dm.q_row(b, h, i0 + t);
          const T* gr = grad_out + dm.q_row(b, h, i0 + t);
          for (int u = 0; u < kPerLane; ++u)
            if (lane + 32 * u < dm.d) {
              dv[u] += pt * A(load(gr + lane + 32 * u));
              dk[u] += dst * A(load(qr + lane + 32 * u));
            }
        }
      }
    T* gk = grad_k + dm.k_row(b, hk, j);
    T* gv = grad_v + dm.k_row(b, hk, j);
    for (int u = 0; u < kPerLane; ++u)
      if (lane + 32 * u < dm.d) {
        store(gk + lane + 32 * u, scale * dk[u]);
        store(gv + lane + 32 * u, dv[u]);
      }
  }
}

AttentionDims dims_of(const char* kernel, const Tensor& q, const Tensor& k, bool causal) {
  QTUNE_CHECK(q.size(3) <= kMaxHeadDim, kernel, ": head dim ", q.size(3), " is over the CUDA kernel's maximum of ",
              kMaxHeadDim);
  return AttentionDims{
      q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), q.size(2) / k.size(2), k.size(1) - q.size(1),
      causal};
}

LaunchShape warp_rows_shape(int64_t rows, int rows_per_warp, int64_t d, size_t element, cudaStream_t stream) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return LaunchShape{blocks_for_rows(blocks), kWarpsPerBlock * 32,
                     static_cast<size_t>(kWarpsPerBlock * rows_per_warp * d) * element, stream};
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                            const Tensor& out, const Tensor& lse) {
  check_attention_args("attention", q, k, v, out, lse);
  const AttentionDims dm = dims_of("attention", q, k, causal);
  const int64_t rows = dm.batch * dm.hq * dm.tq;
  if (rows == 0 || dm.d == 0) return;
  activate();
  if (attention_wmma_applies(q.dtype(), dm))
    return attention_forward_wmma(q.dtype(), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                  static_cast<float*>(lse.data_ptr()), dm, static_cast<float>(scale), stream_);
  dispatch_float(q.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<attention_forward_kernel<T>>(warp_rows_shape(rows, 1, dm.d, sizeof(A), stream_),
                                        static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()),
                                        static_cast<const T*>(v.data_ptr()), static_cast<T*>(out.data_ptr()),
                                        static_cast<A*>(lse.data_ptr()), dm, static_cast<A>(scale));
  });
}

void CudaBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& out, const Tensor& lse, double scale, bool causal,
                                     const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) {
  check_attention_args("attention_backward", q, k, v, out, lse);
  check_attention_grads(grad_out, q, k, v, grad_q, grad_k, grad_v);
  const AttentionDims dm = dims_of("attention_backward", q, k, causal);
  const int64_t q_rows = dm.batch * dm.hq * dm.tq, kv_rows = dm.batch * dm.hkv * dm.tk;
  if (dm.d == 0) return;
  activate();
  dispatch_float(q.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pg = static_cast<const T*>(grad_out.data_ptr());
    const T* pq = static_cast<const T*>(q.data_ptr());
    const T* pk = static_cast<const T*>(k.data_ptr());
    const T* pv = static_cast<const T*>(v.data_ptr());
    const A* pl = static_cast<const A*>(lse.data_ptr());
    // Freed after the launches are queued: the stream orders the allocator's reuse after them.
    const Tensor delta = Tensor::empty(lse.shape(), lse.dtype(), device());
    A* pd = static_cast<A*>(delta.data_ptr());
    if (q_rows > 0)
      launch<attention_delta_kernel<T>>(warp_rows_shape(q_rows, 0, dm.d, sizeof(A), stream_), pg,
                                        static_cast<const T*>(out.data_ptr()), pd, dm);
    if constexpr (std::is_same_v<A, float>)
      if (attention_wmma_applies(q.dtype(), dm))
        return attention_backward_wmma(q.dtype(), pg, pq, pk, pv, pl, pd, grad_q.data_ptr(), grad_k.data_ptr(),
                                       grad_v.data_ptr(), dm, static_cast<float>(scale), stream_);
    if (q_rows > 0)
      launch<attention_grad_q_kernel<T>>(warp_rows_shape(q_rows, 2, dm.d, sizeof(A), stream_), pg, pq, pk, pv, pl, pd,
                                         static_cast<T*>(grad_q.data_ptr()), dm, static_cast<A>(scale));
    if (kv_rows > 0)
      launch<attention_grad_kv_kernel<T>>(warp_rows_shape(kv_rows, 2, dm.d, sizeof(A), stream_), pg, pq, pk, pv, pl, pd,
                                          static_cast<T*>(grad_k.data_ptr()), static_cast<T*>(grad_v.data_ptr()), dm,
                                          static_cast<A>(scale));
  });
}

}  // namespace qtune::gpu
