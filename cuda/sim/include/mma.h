#pragma once
// The nvcuda::wmma fragment API in the sim flavor: m16n16k16 tiles of __half or __nv_bfloat16 with float
// accumulators (the shapes qtune's kernels use). How a GPU spreads a fragment over the lanes of a warp
// is unspecified by CUDA; here every lane holds the whole tile (num_elements = 256), which satisfies
// every property the programming guide promises. The *_sync functions are warp collectives: every
// lane of the warp must call them with the same pointer and leading dimension, the pointer 32-byte
// aligned and the leading dimension a multiple of 16 bytes, or the kernel faults, as it would on a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/sim/observe.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {

template <class Use, int M, int N, int K>
constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
template <class Use, int M, int N, int K>
constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;

inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
T from_float(float v) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16(v);
  else
    return v;
}

// The warp-collective part of every *_sync call: the whole warp arrives, with one pointer and ldm.
inline void enter(const char* what, const void* ptr, unsigned ldm, size_t element_bytes) {
  using qtune::sim::WarpOp;
  const uint64_t mine = reinterpret_cast<uintptr_t>(ptr) ^ (uint64_t{ldm} << 48);
  const uint64_t lane0 = qtune::sim::warp_collective(WarpOp::shfl, 0xffffffffu, mine, 0, 32);
  if (lane0 != mine)
    qtune::sim::device_fault(cudaErrorIllegalInstruction,
                             std::string(what) + ": the lanes of the warp pass different pointers or ldm");
  if (ptr != nullptr && reinterpret_cast<uintptr_t>(ptr) % 32 != 0)
    qtune::sim::device_fault(cudaErrorMisalignedAddress, std::string(what) + ": the pointer is not 32-byte aligned");
  if ((ldm * element_bytes) % 16 != 0)
    qtune::sim::device_fault(cudaErrorIllegalInstruction,
                             std::string(what) + ": ldm " + std::to_string(ldm) + " is not a multiple of 16 bytes");
}

}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the simulator implements the m16n16k16 WMMA shape");
  static_assert(std::is_same_v<Use, accumulator> ? std::is_same_v<T, float>
                                                 : (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>),
                "the simulator implements __half/__nv_bfloat16 operands with float accumulators");

 public:
  static constexpr int kRows = detail::rows<Use, M, N, K>;
  static constexpr int kCols = detail::cols<Use, M, N, K>;
  static constexpr int num_elements = kRows * kCols;
  T x[num_elements];  // row-major: element (r, c) is x[r * kCols + c]
};

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T value) {
  for (T& e : f.x) e = value;
}
template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float value) requires(!std::is_same_v<T, float>) {
  fill_fragment(f, detail::from_float<T>(value));
}

// Operands: the layout is the fragment's type.
template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* ptr, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load names its layout");
  detail::enter("load_matrix_sync", ptr, ldm, sizeof(T));
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::kRows; ++r)
    for (int c = 0; c < F::kCols; ++c)
      f.x[r * F::kCols + c] = std::is_same_v<Layout, row_major> ? ptr[r * ldm + c] : ptr[c * ldm + r];
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* ptr, unsigned ldm, layout_t layout) {
  detail::enter("load_matrix_sync", ptr, ldm, sizeof(float));
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_row_major ? ptr[r * ldm + c] : ptr[c * ldm + r];
}

template <int M, int N, int K>
void store_matrix_sync(float* ptr, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  detail::enter("store_matrix_sync", ptr, ldm, sizeof(float));
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? ptr[r * ldm + c] : ptr[c * ldm + r]) = f.x[r * N + c];
}

// d = a b + c, products exact in f32 and summed over k in order (a GPU's order is unspecified).
template <int M, int N, int K, class T, class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LayoutA>& a,
              const fragment<matrix_b, M, N, K, T, LayoutB>& b, const fragment<accumulator, M, N, K, float>& c) {
  detail::enter("mma_sync", nullptr, 16, 1);
  qtune::sim::count_wmma_mma();
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int l = 0; l < K; ++l) acc += detail::to_float(a.x[i * K + l]) * detail::to_float(b.x[l * N + j]);
      out[i * N + j] = acc;
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}

}  // namespace nvcuda::wmma
