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

// Bytes of an array of `count` elements in the shared-memory plan: WMMA wants 32-byte aligned tiles.
__host__ __device__ constexpr size_t plan_bytes(int64_t count, size_t element) {
  return (static_cast<size_t>(count) * element + 31) / 32 * 32;
}

// Hands out consecutive 32-byte aligned arrays of the block's dynamic shared memory.
class SharedPlan {
 public:
  __device__ explicit SharedPlan(unsigned char* base) : next_(base) {}
  template <class U>
  __device__ U* take(int64_t count) {
    U* p = reinterpret_cast<U*>(next_);
    next_ += plan_bytes(count, sizeof(U));
    return p;
  }

 private:
  unsigned char* next_;
};

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

template <class T>
__global__ void forward_kernel(const T* q, const T* k, const T* v, T* out, float* lse, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  QTUNE_DYNAMIC_SHARED(unsigned char, shared);
  SharedPlan plan(shared);
  const int64_t d = dm.d, tile_elems = kTile * d;
  W* q_s = plan.take<W>(tile_elems);
  W* k_s = plan.take<W>(tile_elems);
  W* v_s = plan.take<W>(tile_elems);
  float* o_s = plan.take<float>(tile_elems);
  float* s_s = plan.take<float>(kTile * kTile);
  W* p_s = plan.take<W>(kTile * kTile);
  float* row_s = plan.take<float>(kTile);
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t q_tiles = (dm.tq + kTile - 1) / kTile, tiles = dm.batch * dm.hq * q_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t i0 = (tile % q_tiles) * kTile, h = (tile / q_tiles) % dm.hq, b = tile / (q_tiles * dm.hq);
    const int64_t hk = h / dm.group;
    __syncwarp();  // the previous tile's readers are done
    stage_tile(
        q, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, q_s);
    zero_tile(o_s, d);
    // Lane r < 16 keeps query i0 + r's running max m and sum l.
    const int64_t i = i0 + lane % kTile;
    const int64_t key_end = lane < kTile && i < dm.tq ? dm.key_end(i) : 0;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < tile_key_end(dm, i0); j0 += kTile) {
      __syncwarp();
      stage_tile(
          k, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, k_s);
      stage_tile(
          v, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, v_s);
      __syncwarp();
      tile_scores(q_s, k_s, d, s_s);
      __syncwarp();
      if (lane < kTile) {
        float* s_row = s_s + lane * kTile;
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
          p_s[lane * kTile + c] = operand_from<W>(p);
        }
        if (m_new != -INFINITY) alpha = std::exp(m - m_new);  // 0 on the first visible tile
        l = l * alpha + sum;
        m = m_new;
        row_s[lane] = alpha;
      }
      __syncwarp();
      for (int64_t e = lane; e < tile_elems; e += 32) o_s[e] *= row_s[e / d];
      __syncwarp();
      tile_accumulate(p_s, v_s, d, o_s);
    }
    __syncwarp();
    if (lane < kTile) {
      row_s[lane] = l > 0.0f ? 1.0f / l : 0.0f;
      if (i < dm.tq) lse[dm.lse_at(b, h, i)] = l > 0.0f ? m + std::log(l) : -INFINITY;
    }
    __syncwarp();
    for (int64_t e = lane; e < tile_elems; e += 32) {
      const int64_t r = e / d;
      if (i0 + r < dm.tq) numerics::store(out + dm.q_row(b, h, i0 + r) + e % d, o_s[e] * row_s[r]);
    }
  }
}

// dQ = scale * sum_j dS_j k_j for a tile of 16 query rows.
template <class T>
__global__ void grad_q_kernel(const T* grad_out, const T* q, const T* k, const T* v, const float* lse,
                              const float* delta, T* grad_q, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  QTUNE_DYNAMIC_SHARED(unsigned char, shared);
  SharedPlan plan(shared);
  const int64_t d = dm.d, tile_elems = kTile * d;
  W* q_s = plan.take<W>(tile_elems);
  W* g_s = plan.take<W>(tile_elems);
  W* k_s = plan.take<W>(tile_elems);
  W* v_s = plan.take<W>(tile_elems);
  float* dq_s = plan.take<float>(tile_elems);
  float* s_s = plan.take<float>(kTile * kTile);
  float* dp_s = plan.take<float>(kTile * kTile);
  W* ds_s = plan.take<W>(kTile * kTile);
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t q_tiles = (dm.tq + kTile - 1) / kTile, tiles = dm.batch * dm.hq * q_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t i0 = (tile % q_tiles) * kTile, h = (tile / q_tiles) % dm.hq, b = tile / (q_tiles * dm.hq);
    const int64_t hk = h / dm.group;
    __syncwarp();
    stage_tile(
        q, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, q_s);
    stage_tile(
        grad_out, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, g_s);
    zero_tile(dq_s, d);
    const int64_t i = i0 + lane % kTile;
    const bool owns = lane < kTile && i < dm.tq;
    const int64_t key_end = owns ? dm.key_end(i) : 0;
    const float row_lse = owns ? lse[dm.lse_at(b, h, i)] : -INFINITY;
    const float row_delta = owns ? delta[dm.lse_at(b, h, i)] : 0.0f;
    for (int64_t j0 = 0; j0 < tile_key_end(dm, i0); j0 += kTile) {
      __syncwarp();
      stage_tile(
          k, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, k_s);
      stage_tile(
          v, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, v_s);
      __syncwarp();
      tile_scores(q_s, k_s, d, s_s);
      tile_scores(g_s, v_s, d, dp_s);
      __syncwarp();
      if (lane < kTile)
        for (int c = 0; c < kTile; ++c) {
          const int e = lane * kTile + c;
          const bool seen = j0 + c < key_end && row_lse != -INFINITY;
          const float p = seen ? std::exp(scale * s_s[e] - row_lse) : 0.0f;
          ds_s[e] = operand_from<W>(p * (dp_s[e] - row_delta));
        }
      __syncwarp();
      tile_accumulate(ds_s, k_s, d, dq_s);
    }
    __syncwarp();
    for (int64_t e = lane; e < tile_elems; e += 32) {
      const int64_t r = e / d;
      if (i0 + r < dm.tq) numerics::store(grad_q + dm.q_row(b, h, i0 + r) + e % d, scale * dq_s[e]);
    }
  }
}

// dV = sum_i P_i^T dO_i and dK = scale * sum_i dS_i^T q_i over every query head of the group, for a tile
// of 16 key rows.
template <class T>
__global__ void grad_kv_kernel(const T* grad_out, const T* q, const T* k, const T* v, const float* lse,
                               const float* delta, T* grad_k, T* grad_v, AttentionDims dm, float scale) {
  using W = wmma_t<T>;
  QTUNE_DYNAMIC_SHARED(unsigned char, shared);
  SharedPlan plan(shared);
  const int64_t d = dm.d, tile_elems = kTile * d;
  W* k_s = plan.take<W>(tile_elems);
  W* v_s = plan.take<W>(tile_elems);
  W* q_s = plan.take<W>(tile_elems);
  W* g_s = plan.take<W>(tile_elems);
  float* dk_s = plan.take<float>(tile_elems);
  float* dv_s = plan.take<float>(tile_elems);
  float* s_s = plan.take<float>(kTile * kTile);  // S^T: key rows, query columns
  float* dp_s = plan.take<float>(kTile * kTile);
  W* p_s = plan.take<W>(kTile * kTile);
  W* ds_s = plan.take<W>(kTile * kTile);
  float* lse_s = plan.take<float>(kTile);
  float* delta_s = plan.take<float>(kTile);
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t kv_tiles = (dm.tk + kTile - 1) / kTile, tiles = dm.batch * dm.hkv * kv_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t j0 = (tile % kv_tiles) * kTile, hk = (tile / kv_tiles) % dm.hkv, b = tile / (kv_tiles * dm.hkv);
    __syncwarp();
    stage_tile(
        k, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, k_s);
    stage_tile(
        v, j0, dm.tk, d, [&](int64_t j) { return dm.k_row(b, hk, j); }, v_s);
    zero_tile(dk_s, d);
    zero_tile(dv_s, d);
    const int64_t j = j0 + lane % kTile;
    const bool owns = lane < kTile && j < dm.tk;
    // The tile's first key is seen by the fewest queries: start at its first query's tile.
    const int64_t first = dm.first_query(j0) / kTile * kTile;
    for (int64_t h = hk * dm.group; h < (hk + 1) * dm.group; ++h)
      for (int64_t i0 = first; i0 < dm.tq; i0 += kTile) {
        __syncwarp();
        stage_tile(
            q, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, q_s);
        stage_tile(
            grad_out, i0, dm.tq, d, [&](int64_t i) { return dm.q_row(b, h, i); }, g_s);
        if (lane < kTile) {
          const bool real = i0 + lane < dm.tq;
          lse_s[lane] = real ? lse[dm.lse_at(b, h, i0 + lane)] : -INFINITY;
          delta_s[lane] = real ? delta[dm.lse_at(b, h, i0 + lane)] : 0.0f;
        }
        __syncwarp();
        tile_scores(k_s, q_s, d, s_s);
        tile_scores(v_s, g_s, d, dp_s);
        __syncwarp();
        if (lane < kTile)
          for (int c = 0; c < kTile; ++c) {
            const int e = lane * kTile + c;
            const int64_t i = i0 + c;
            const bool seen = owns && i < dm.tq && j < dm.key_end(i) && lse_s[c] != -INFINITY;
            const float p = seen ? std::exp(scale * s_s[e] - lse_s[c]) : 0.0f;
            p_s[e] = operand_from<W>(p);
            ds_s[e] = operand_from<W>(p * (dp_s[e] - delta_s[c]));
          }
        __syncwarp();
        tile_accumulate(p_s, g_s, d, dv_s);
        tile_accumulate(ds_s, q_s, d, dk_s);
      }
    __syncwarp();
    for (int64_t e = lane; e < tile_elems; e += 32) {
      const int64_t r = j0 + e / d;
      if (r < dm.tk) {
        numerics::store(grad_k + dm.k_row(b, hk, r) + e % d, scale * dk_s[e]);
        numerics::store(grad_v + dm.k_row(b, hk, r) + e % d, dv_s[e]);
      }
    }
  }
}

// One warp per block, with the block's shared-memory plan in bytes.
LaunchShape warp_tiles_shape(int64_t tiles, size_t shared_bytes, cudaStream_t stream) {
  return LaunchShape{blocks_for_rows(tiles), 32, shared_bytes, stream};
}

size_t tiles_bytes(const AttentionDims& dm, int operand_tiles, int f32_tiles, int f32_squares, int operand_squares,
                   int f32_rows) {
  const int64_t tile = kTile * dm.d, square = kTile * kTile;
  return operand_tiles * plan_bytes(tile, 2) + f32_tiles * plan_bytes(tile, 4) + f32_squares * plan_bytes(square, 4) +
         operand_squares * plan_bytes(square, 2) + f32_rows * plan_bytes(kTile, 4);
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
  const int64_t tiles = dm.batch * dm.hq * ((dm.tq + kTile - 1) / kTile);
  if (tiles == 0) return;
  dispatch_operand(t, [&](auto tag) {
    using T = decltype(tag);
    launch<forward_kernel<T>>(warp_tiles_shape(tiles, tiles_bytes(dm, 3, 1, 1, 1, 1), stream), static_cast<const T*>(q),
                              static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse, dm, scale);
  });
}

void attention_backward_wmma(DType t, const void* grad_out, const void* q, const void* k, const void* v,
                             const float* lse, const float* delta, void* grad_q, void* grad_k, void* grad_v,
                             const AttentionDims& dm, float scale, cudaStream_t stream) {
  const int64_t q_tiles = dm.batch * dm.hq * ((dm.tq + kTile - 1) / kTile);
  const int64_t kv_tiles = dm.batch * dm.hkv * ((dm.tk + kTile - 1) / kTile);
  dispatch_operand(t, [&](auto tag) {
    using T = decltype(tag);
    const T* pg = static_cast<const T*>(grad_out);
    const T* pq = static_cast<const T*>(q);
    const T* pk = static_cast<const T*>(k);
    const T* pv = static_cast<const T*>(v);
    if (q_tiles > 0)
      launch<grad_q_kernel<T>>(warp_tiles_shape(q_tiles, tiles_bytes(dm, 4, 1, 2, 1, 0), stream), pg, pq, pk, pv, lse,
                               delta, static_cast<T*>(grad_q), dm, scale);
    if (kv_tiles > 0)
      launch<grad_kv_kernel<T>>(warp_tiles_shape(kv_tiles, tiles_bytes(dm, 4, 2, 2, 2, 2), stream), pg, pq, pk, pv, lse,
                                delta, static_cast<T*>(grad_k), static_cast<T*>(grad_v), dm, scale);
  });
}

}  // namespace qtune::gpu
