#pragma once
// The geometry of one attention call, shared by the plain kernels (cuda_attention.cu) and the
// tensor-core ones (cuda_attention_wmma.cu). q, out, grad_out: [B, Tq, Hq, D]; k, v: [B, Tk, Hkv, D];
// lse and delta: [B, Hq, Tq].
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/dtype.h"

namespace qtune::gpu {

struct AttentionDims {
  int64_t batch, tq, tk, hq, hkv, d, group;
  int64_t causal_offset;  // query i sees key j <= i + causal_offset
  bool causal;
  // Query i sees keys [0, key_end(i)); key j is seen by queries [first_query(j), tq).
  __host__ __device__ int64_t key_end(int64_t i) const {
    return !causal ? tk : i + causal_offset + 1 < tk ? i + causal_offset + 1 : tk;
  }
  __host__ __device__ int64_t first_query(int64_t j) const {
    return !causal ? 0 : j - causal_offset > 0 ? j - causal_offset : 0;
  }
  // Offsets (in elements) of row i of query head h, of row j of the kv head serving h, and of lse.
  __host__ __device__ int64_t q_row(int64_t b, int64_t h, int64_t i) const { return ((b * tq + i) * hq + h) * d; }
  __host__ __device__ int64_t k_row(int64_t b, int64_t hk, int64_t j) const { return ((b * tk + j) * hkv + hk) * d; }
  __host__ __device__ int64_t lse_at(int64_t b, int64_t h, int64_t i) const { return (b * hq + h) * tq + i; }
};

// The tensor-core path takes bf16 and f16 with head dims that are whole 16-wide WMMA tiles, up to 128
// (its per-warp tiles of q, k, v and the f32 accumulators then fit the 48 KiB of shared memory every
// GPU grants a block).
bool attention_wmma_applies(DType t, const AttentionDims& dm);

// Flash attention on m16n16k16 tensor-core tiles: out and the log-sum-exp (f32).
void attention_forward_wmma(DType t, const void* q, const void* k, const void* v, void* out, float* lse,
                            const AttentionDims& dm, float scale, cudaStream_t stream);
// The gradients, given delta = rowsum(grad_out * out) (f32, shaped like lse).
void attention_backward_wmma(DType t, const void* grad_out, const void* q, const void* k, const void* v,
                             const float* lse, const float* delta, void* grad_q, void* grad_k, void* grad_v,
                             const AttentionDims& dm, float scale, cudaStream_t stream);

}  // namespace qtune::gpu
