// Flash attention on tensor cores for bf16 and f16: a warp (one per block) takes 16 query rows (or, in
// the dK/dV pass, 16 key rows) and visits the other side in 16-row tiles. Every product over the head
// dim or over a tile (S = Q K^T, dP = dO V^T, O += P V, dQ += dS K, dV += P^T dO, dK += dS^T Q) is a
// chain of m16n16k16 WMMA products with f32 accumulation; the softmax bookkeeping (running max and sum,
// P from the log-sum-exp, dS = P (dP - delta)) runs in f32 with one lane per row. P and dS are rounded
// to the operand type before their products, as flash attention does on GPUs. Same two race-free
// backward passes as the plain kernels (cuda_attention.cu), no [Tq, Tk] matrix, no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cmath>
#include <type_traits>

#include "cuda/attention_dims.cuh"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTile = 16;  // the WMMA tile's rows, columns and depth
constexpr int64_t kMaxWmmaHeadDim = 128;

template <class T>
struct WmmaOperand;
template <>
struct WmmaOperand<bf16_t> {
  using type = __nv_bfloat16;
};
template <>
struct WmmaOperand<f16_t> {
  using type = __half;
};
template <class T>
using wmma_t = typename WmmaOperand<T>::type;

__device__ __forceinline__ __nv_bfloat16 operand_of(bf16_t x) { return __ushort_as_bfloat16(x.bits); }
__device__ __forceinline__ __half operand_of(f16_t x) { return __ushort_as_half(x.bits); }
template <class W>
__device__ __forceinline__ W operand_from(float v) {
  if constexpr (std::is_same_v<W, __half>)
    return __float2half(v);
  else
    return __float2bfloat16(v);
}

// Hands out consecutive 32-byte aligned arrays (WMMA's alignment) of a block's dynamic shared memory:
// 16 x d tiles, 16 x 16 squares and 16-element rows. With a null base it only counts the bytes, which is
// how the host sizes a launch from the same layout the kernel carves.
class SharedPlan {
 public:
  __host__ __device__ SharedPlan(unsigned char* base, int64_t d) : base_(base), d_(d) {}
  template <class... U>
  __host__ __device__ void tiles(U*&... arrays) {
    (take(arrays, kTile * d_), ...);
  }
  template <class... U>
  __host__ __device__ void squares(U*&... arrays) {
    (take(arrays, kTile * kTile), ...);
  }
  template <class... U>
  __host__ __device__ void rows(U*&... arrays) {
    (take(arrays, kTile), ...);
  }
  __host__ __device__ size_t bytes() const { return used_; }

 private:
  template <class U>
  __host__ __device__ void take(U*& array, int64_t count) {
    array = base_ == nullptr ? nullptr : reinterpret_cast<U*>(base_ + used_);
    used_ += (static_cast<size_t>(count) * sizeof(U) + 31) / 32 * 32;
  }

  unsigned char* base_;
  int64_t d_;
  size_t used_ = 0;
};

// Each kernel's shared memory: operand tiles (W), f32 accumulators and scores, per-row statistics.
template <class W>
struct ForwardShared {
  W *q, *k, *v, *p;
  float *o, *s, *row;
  __host__ __device__ explicit ForwardShared(SharedPlan& plan) {
    plan.tiles(q, k, v, o);
    plan.squares(s, p);
    plan.rows(row);
  }
};
template <class W>
struct GradQShared {
  W *q, *g, *k, *v, *ds;
  float *dq, *s, *dp;
  __host__ __device__ explicit GradQShared(SharedPlan& plan) {
    plan.tiles(q, g, k, v, dq);
    plan.squares(s, dp, ds);
  }
};
template <class W>
struct GradKVShared {
  W *k, *v, *q, *g, *p, *ds;
  float *dk, *dv, *s, *dp, *lse, *delta;  // s and dp transposed: key rows, query columns
  __host__ __device__ explicit GradKVShared(SharedPlan& plan) {
    plan.tiles(k, v, q, g, dk, dv);
    plan.squares(s, dp, p, ds);
    plan.rows(lse, delta);
  }
};

// This block's dynamic shared memory, laid out as Layout<W> for head dim d.
template <template <class> class Layout, class W>
__device__ Layout<W> carve_shared(int64_t d) {
  QTUNE_DYNAMIC_SHARED(unsigned char, shared);
  SharedPlan plan(shared, d);
  return Layout<W>(plan);
}

// The dynamic shared memory a kernel with layout Layout needs for head dim d.
template <template <class> class Layout, class W>
size_t shared_bytes_for(int64_t d) {
  SharedPlan counter(nullptr, d);
  Layout<W>{counter};
  return counter.bytes();
}

// Rows [r0, r0 + 16) of a head's [rows, d] view into a row-major 16 x d tile of the operand type,
// zeros past `rows`. row_at(r) is the element offset of row r in src.
template <class T, class RowAt>
__device__ void stage_tile(const T* src, int64_t r0, int64_t rows, int64_t d, RowAt row_at, wmma_t<T>* tile) {
  for (int64_t e = threadIdx.x; e < kTile * d; e += 32) {
    const int64_t r = r0 + e / d;
    tile[e] = operand_of(r < rows ? src[row_at(r) + e % d] : T{});
  }
}

__device__ void zero_tile(float* tile, int64_t d) {
  for (int64_t e = threadIdx.x; e < kTile * d; e += 32) tile[e] = 0.0f;
}

// s[16, 16] = a[16, d] b[16, d]^T: a and b row-major with row stride d, s row-major.
template <class W>
__device__ void tile_scores(const W* a, const W* b, int64_t d, float* s) {
  wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, W, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, W, wmma::col_major> fb;  // b^T
  wmma::fragment<wmma::accumulator, kTile, kTile, kTile, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int64_t x = 0; x < d; x += kTile) {
    wmma::load_matrix_sync(fa, a + x, static_cast<unsigned>(d));
    wmma::load_matrix_sync(fb, b + x, static_cast<unsigned>(d));
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(s, acc, kTile, wmma::mem_row_major);
}

// The backward's two score products between warp barriers: s = a b^T (scores) and dp = g w^T (their
// upstream gradients dP).
template <class W>
__device__ void scores_and_grads(const W* a, const W* b, const W* g, const W* w, int64_t d, float* s, float* dp) {
  __syncwarp();
  tile_scores(a, b, d, s);
  tile_scores(g, w, d, dp);
  __syncwarp();
}

// acc[16, d] += p[16, 16] m[16, d]: p row-major with stride 16, m and acc row-major with stride d.
template <class W>
__device__ void tile_accumulate(const W* p, const W* m, int64_t d, float* acc) {
  wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, W, wmma::row_major> fp;
  wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, W, wmma::row_major> fm;
  wmma::fragment<wmma::accumulator, kTile, kTile, kTile, float> fc;
  wmma::load_matrix_sync(fp, p, kTile);
  for (int64_t x = 0; x < d; x += kTile) {
    wmma::load_matrix_sync(fm, m + x, static_cast<unsigned>(d));
    wmma::load_matrix_sync(fc, acc + x, static_cast<unsigned>(d), wmma::mem_row_major);
    wmma::mma_sync(fc, fp, fm, fc);
    wmma::store_matrix_sync(acc + x, fc, static_cast<unsigned>(d), wmma::mem_row_major);
  }
}

// The first key of the last query row of the tile starting at i0 that it does not see: the tile's key
// range, as key_end grows with i.
__device__ int64_t tile_key_end(const AttentionDims& dm, int64_t i0) {
  return dm.key_end((i0 + kTile < dm.tq ? i0 + kTile : dm.tq) - 1);
}

// A seen score's probability P = exp(score - lse) (0 where the key is masked or the query sees no key)
// and its gradient dS = P (dP - delta).
struct ScoreGrad {
  float p, ds;
};
__device__ ScoreGrad score_grad(bool seen, float score, float lse, float dp, float delta) {
  const float p = seen && lse != -INFINITY ? std::exp(score - lse) : 0.0f;
  return {p, p * (dp - delta)};
}

// The 16 query rows a q-side tile covers: batch b, query head h (served by kv head hk), rows from i0.
struct QueryTile {
  int64_t b, h, hk, i0;
};
__host__ __device__ int64_t query_tile_count(const AttentionDims& dm) {
  return dm.batch * dm.hq * ((dm.tq + kTile - 1) / kTile);
}
__device__ QueryTile query_tile(const AttentionDims& dm, int64_t tile) {
  const int64_t per_head = (dm.tq + kTile - 1) / kTile, h = (tile / per_head) % dm.hq;
  return {tile / (per_head * dm.hq), h, h / dm.group, (tile % per_head) * kTile};
}

// Rows [r0, r0 + 16) of the query-side tensor x (q, grad_out) for head h, and of k and v for kv head hk.
template <class T>
__device__ void stage_query_rows(const T* x, const AttentionDims& dm, int64_t b, int64_t h, int64_t r0,
                                 wmma_t<T>* tile) {
  stage_tile(
      x, r0, dm.tq, dm.d, [&](int64_t i) { return dm.q_row(b, h, i); }, tile);
}
template <class T>
__device__ void stage_kv_rows(const T* k, const T* v, const AttentionDims& dm, int64_t b, int64_t hk, int64_t r0,
                              wmma_t<T>* k_tile, wmma_t<T>* v_tile) {
  stage_tile(
      k, r0, dm.tk, dm.d, [&](int64_t j) { return dm.k_row(b, hk, j); }, k_tile);
  stage_tile(
      v, r0, dm.tk, dm.d, [&](int64_t j) { return dm.k_row(b, hk, j); }, v_tile);
}

// Writes a 16 x d f32 tile times `factor(r)` into rows [r0, r0 + 16) of out below `rows`; row_at(r) is
// the element offset of row r.
template <class T, class RowAt, class Factor>
__device__ void store_tile(const float* tile, int64_t r0, int64_t rows, int64_t d, RowAt row_at, Factor factor,
                           T* out) {
  for (int64_t e = threadIdx.x; e < kTile * d; e += 32) {
    const int64_t r = e / d;
    if (r0 + r < rows) numerics::store(out + row_at(r0 + r) + e % d, tile[e] * factor(r));
  }
}

template <class T>
__global__ void forward_kernel(const T* q, const T* k, const T* v, T* out, float* lse, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  const auto sh = carve_shared<ForwardShared, W>(dm.d);
  const int64_t d = dm.d, tile_elems = kTile * d;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t tile = blockIdx.x; tile < query_tile_count(dm); tile += gridDim.x) {
    const QueryTile t = query_tile(dm, tile);
    const int64_t b = t.b, h = t.h, hk = t.hk, i0 = t.i0;
    __syncwarp();  // the previous tile's readers are done
    stage_query_rows(q, dm, b, h, i0, sh.q);
    zero_tile(sh.o, d);
    // Lane r < 16 keeps query i0 + r's running max m and sum l.
    const int64_t i = i0 + lane % kTile;
    const int64_t key_end = lane < kTile && i < dm.tq ? dm.key_end(i) : 0;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < tile_key_end(dm, i0); j0 += kTile) {
      __syncwarp();
      stage_kv_rows(k, v, dm, b, hk, j0, sh.k, sh.v);
      __syncwarp();
      tile_scores(sh.q, sh.k, d, sh.s);
      __syncwarp();
      if (lane < kTile) {
        float* s_row = sh.s + lane * kTile;
        float tile_max = -INFINITY;
        for (int c = 0; c < kTile; ++c) {
          s_row[c] = j0 + c < key_end ? scale * s_row[c] : -INFINITY;
          tile_max = s_row[c] > tile_max ? s_row[c] : tile_max;
        }
        const float m_new = tile_max > m ? tile_max : m;
        float alpha = 1.0f, sum = 0.0f;
        for (int c = 0; c < kTile; ++c) {
          // No visible key yet (m_new = -inf): P is 0 and nothing is rescaled.
          const float p = m_new == -INFINITY ? 0.0f : std::exp(s_row[c] - m_new);
          sum += p;
          sh.p[lane * kTile + c] = operand_from<W>(p);
        }
        if (m_new != -INFINITY) alpha = std::exp(m - m_new);  // 0 on the first visible tile
        l = l * alpha + sum;
        m = m_new;
        sh.row[lane] = alpha;
      }
      __syncwarp();
      for (int64_t e = lane; e < tile_elems; e += 32) sh.o[e] *= sh.row[e / d];
      __syncwarp();
      tile_accumulate(sh.p, sh.v, d, sh.o);
    }
    __syncwarp();
    if (lane < kTile) {
      sh.row[lane] = l > 0.0f ? 1.0f / l : 0.0f;
      if (i < dm.tq) lse[dm.lse_at(b, h, i)] = l > 0.0f ? m + std::log(l) : -INFINITY;
    }
    __syncwarp();
    store_tile(
        sh.o, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, [&](int64_t r) { return sh.row[r]; }, out);
  }
}

// dQ = scale * sum_j dS_j k_j for a tile of 16 query rows.
template <class T>
__global__ void grad_q_kernel(const T* grad_out, const T* q, const T* k, const T* v, const float* lse,
                              const float* delta, T* grad_q, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  const auto sh = carve_shared<GradQShared, W>(dm.d);
  const int64_t d = dm.d;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t tile = blockIdx.x; tile < query_tile_count(dm); tile += gridDim.x) {
    const QueryTile t = query_tile(dm, tile);
    const int64_t b = t.b, h = t.h, hk = t.hk, i0 = t.i0;
    __syncwarp();
    stage_query_rows(q, dm, b, h, i0, sh.q);
    stage_query_rows(grad_out, dm, b, h, i0, sh.g);
    zero_tile(sh.dq, d);
    const int64_t i = i0 + lane % kTile;
    const bool owns = lane < kTile && i < dm.tq;
    const int64_t key_end = owns ? dm.key_end(i) : 0;
    const float row_lse = owns ? lse[dm.lse_at(b, h, i)] : -INFINITY;
    const float row_delta = owns ? delta[dm.lse_at(b, h, i)] : 0.0f;
    for (int64_t j0 = 0; j0 < tile_key_end(dm, i0); j0 += kTile) {
      __syncwarp();
      stage_kv_rows(k, v, dm, b, hk, j0, sh.k, sh.v);
      scores_and_grads(sh.q, sh.k, sh.g, sh.v, d, sh.s, sh.dp);
      if (lane < kTile)
        for (int c = 0; c < kTile; ++c) {
          const int e = lane * kTile + c;
          sh.ds[e] = operand_from<W>(score_grad(j0 + c < key_end, scale * sh.s[e], row_lse, sh.dp[e], row_delta).ds);
        }
      __syncwarp();
      tile_accumulate(sh.ds, sh.k, d, sh.dq);
    }
    __syncwarp();
    store_tile(
        sh.dq, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, [&](int64_t) { return scale; }, grad_q);
  }
}

// dV = sum_i P_i^T dO_i and dK = scale * sum_i dS_i^T q_i over every query head of the group, for a tile
// of 16 key rows.
template <class T>
__global__ void grad_kv_kernel(const T* grad_out, const T* q, const T* k, const T* v, const float* lse,
                               const float* delta, T* grad_k, T* grad_v, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  const auto sh = carve_shared<GradKVShared, W>(dm.d);
  const int64_t d = dm.d;
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t kv_tiles = (dm.tk + kTile - 1) / kTile, tiles = dm.batch * dm.hkv * kv_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t j0 = (tile % kv_tiles) * kTile, hk = (tile / kv_tiles) % dm.hkv, b = tile / (kv_tiles * dm.hkv);
    __syncwarp();
    stage_kv_rows(k, v, dm, b, hk, j0, sh.k, sh.v);
    zero_tile(sh.dk, d);
    zero_tile(sh.dv, d);
    const int64_t j = j0 + lane % kTile;
    const bool owns = lane < kTile && j < dm.tk;
    // The tile's first key is seen by the fewest queries: start at its first query's tile.
    const int64_t first = dm.first_query(j0) / kTile * kTile;
    for (int64_t h = hk * dm.group; h < (hk + 1) * dm.group; ++h)
      for (int64_t i0 = first; i0 < dm.tq; i0 += kTile) {
        __syncwarp();
        stage_query_rows(q, dm, b, h, i0, sh.q);
        stage_query_rows(grad_out, dm, b, h, i0, sh.g);
        if (lane < kTile) {
          const bool real = i0 + lane < dm.tq;
          sh.lse[lane] = real ? lse[dm.lse_at(b, h, i0 + lane)] : -INFINITY;
          sh.delta[lane] = real ? delta[dm.lse_at(b, h, i0 + lane)] : 0.0f;
        }
        scores_and_grads(sh.k, sh.q, sh.v, sh.g, d, sh.s, sh.dp);
        if (lane < kTile)
          for (int c = 0; c < kTile; ++c) {
            const int e = lane * kTile + c;
            const int64_t i = i0 + c;
            const ScoreGrad g =
                score_grad(owns && i < dm.tq && j < dm.key_end(i), scale * sh.s[e], sh.lse[c], sh.dp[e], sh.delta[c]);
            sh.p[e] = operand_from<W>(g.p);
            sh.ds[e] = operand_from<W>(g.ds);
          }
        __syncwarp();
        tile_accumulate(sh.p, sh.g, d, sh.dv);
        tile_accumulate(sh.ds, sh.q, d, sh.dk);
      }
    __syncwarp();
    const auto key_row = [&](int64_t j) { return dm.k_row(b, hk, j); };
    store_tile(
        sh.dk, j0, dm.tk, d, key_row, [&](int64_t) { return scale; }, grad_k);
    store_tile(
        sh.dv, j0, dm.tk, d, key_row, [](int64_t) { return 1.0f; }, grad_v);
  }
}

// One warp per block, with the block's shared-memory plan in bytes.
LaunchShape warp_tiles_shape(int64_t tiles, size_t shared_bytes, cudaStream_t stream) {
  // Past 48 KiB a launch needs cudaFuncAttributeMaxDynamicSharedMemorySize: kMaxWmmaHeadDim keeps below it.
  QTUNE_CHECK(shared_bytes <= size_t{48} << 10, "attention (tensor cores): ", shared_bytes,
              " bytes of shared memory per block, over the 48 KiB every GPU grants");
  return LaunchShape{blocks_for_rows(tiles), 32, shared_bytes, stream};
}

// Calls f(T{}) for the two operand types the tensor-core path takes.
template <class F>
void dispatch_operand(DType t, F&& f) {
  if (t == DType::bf16) return f(bf16_t{});
  QTUNE_CHECK(t == DType::f16, "attention (tensor cores): dtype ", dtype_name(t), " is not bf16 or f16");
  f(f16_t{});
}

}  // namespace

bool attention_wmma_applies(DType t, const AttentionDims& dm) {
  return (t == DType::bf16 || t == DType::f16) && dm.d > 0 && dm.d % kTile == 0 && dm.d <= kMaxWmmaHeadDim;
}

void attention_forward_wmma(DType t, const void* q, const void* k, const void* v, void* out, float* lse,
                            const AttentionDims& dm, float scale, cudaStream_t stream) {
  const int64_t tiles = query_tile_count(dm);
  if (tiles == 0) return;
  dispatch_operand(t, [&](auto tag) {
    using T = decltype(tag);
    launch<forward_kernel<T>>(warp_tiles_shape(tiles, shared_bytes_for<ForwardShared, wmma_t<T>>(dm.d), stream),
                              static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                              static_cast<T*>(out), lse, dm, scale);
  });
}

void attention_backward_wmma(DType t, const void* grad_out, const void* q, const void* k, const void* v,
                             const float* lse, const float* delta, void* grad_q, void* grad_k, void* grad_v,
                             const AttentionDims& dm, float scale, cudaStream_t stream) {
  const int64_t q_tiles = query_tile_count(dm);
  const int64_t kv_tiles = dm.batch * dm.hkv * ((dm.tk + kTile - 1) / kTile);
  dispatch_operand(t, [&](auto tag) {
    using T = decltype(tag);
    const T* pg = static_cast<const T*>(grad_out);
    const T* pq = static_cast<const T*>(q);
    const T* pk = static_cast<const T*>(k);
    const T* pv = static_cast<const T*>(v);
    if (q_tiles > 0)
      launch<grad_q_kernel<T>>(warp_tiles_shape(q_tiles, shared_bytes_for<GradQShared, wmma_t<T>>(dm.d), stream), pg,
                               pq, pk, pv, lse, delta, static_cast<T*>(grad_q), dm, scale);
    if (kv_tiles > 0)
      launch<grad_kv_kernel<T>>(warp_tiles_shape(kv_tiles, shared_bytes_for<GradKVShared, wmma_t<T>>(dm.d), stream), pg,
                                pq, pk, pv, lse, delta, static_cast<T*>(grad_k), static_cast<T*>(grad_v), dm, scale);
  });
}

}  // namespace qtune::gpu
