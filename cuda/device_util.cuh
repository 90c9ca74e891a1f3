#pragma once
// Shared by the .cu kernel files: element load/store through the engine's scalar numerics (so a
// bf16 rounds on the GPU exactly as on the CPU), dtype dispatch, strided indexing and launch sizes.
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/device_fault.h"
#include "cuda/launch.cuh"
#include "cuda/shared_memory.cuh"
#include "engine/numerics/element.h"
#include "engine/numerics/fp8.h"
#include "engine/tensor.h"

namespace qtune::gpu {

using numerics::acc_t;
using numerics::dispatch_float;
using numerics::load;
using numerics::store;

constexpr int kMaxRank = 8;

// Element offsets of N operands of one shape, from a linear index over that shape. Dims that are
// contiguous with each other in every operand are merged on the host first, so most views index as
// rank 1 or 2.
template <int N>
struct Indexer {
  int rank = 0;
  int64_t sizes[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};

  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t i = linear % sizes[d];
      linear /= sizes[d];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

template <int N>
Indexer<N> make_indexer(const char* kernel, const Shape& shape, const std::array<const Strides*, N>& strides) {
  Indexer<N> ix;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = ix.rank > 0;
    for (int k = 0; k < N && merge; ++k) merge = ix.strides[k][ix.rank - 1] == (*strides[k])[d] * shape[d];
    if (merge) {
      ix.sizes[ix.rank - 1] *= shape[d];
      for (int k = 0; k < N; ++k) ix.strides[k][ix.rank - 1] = (*strides[k])[d];
      continue;
    }
    QTUNE_CHECK(ix.rank < kMaxRank, kernel, ": views of more than ", kMaxRank,
                " non-mergeable dims are not supported on CUDA (shape ", shape_str(shape), ")");
    ix.sizes[ix.rank] = shape[d];
    for (int k = 0; k < N; ++k) ix.strides[k][ix.rank] = (*strides[k])[d];
    ++ix.rank;
  }
  return ix;
}

// Grid-stride launches: enough blocks to fill any current GPU, few enough that each thread loops.
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 8192 ? 8192 : blocks));
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// A 16-byte chunk of T for vectorized loads and stores.
template <class T>
struct alignas(16) Pack {
  static constexpr int size = 16 / sizeof(T);
  T v[size];
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Pack i of an array of T; the address must be 16-byte aligned, as the GPU's vector loads require.
template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* base, int64_t i) {
  const Pack<T>* p = reinterpret_cast<const Pack<T>*>(base) + i;
#if defined(QTUNE_CUDA_SIM)
  sim::check_vector_access(p, sizeof(Pack<T>), "a 16-byte vector load");
#endif
  return *p;
}

template <class T>
__device__ __forceinline__ void store_pack(T* base, int64_t i, const Pack<T>& value) {
  Pack<T>* p = reinterpret_cast<Pack<T>*>(base) + i;
#if defined(QTUNE_CUDA_SIM)
  sim::check_vector_access(p, sizeof(Pack<T>), "a 16-byte vector store");
#endif
  *p = value;
}

// One argument of device_fail's text: a string or an integer.
struct FaultArg {
  const char* text = nullptr;
  long long value = 0;
  __device__ FaultArg(const char* t) : text(t) {}
  __device__ FaultArg(long long v) : value(v) {}
};

// printf's %s and %lld, the only conversions device_fail's callers use, into out (cap bytes, NUL-terminated,
// cut short if it must be); a final newline is dropped. A GPU has no snprintf.
__device__ inline void format_fault(char* out, int cap, const char* format, const FaultArg* args, int count) {
  int used = 0, next = 0;
  auto put = [&](char c) {
    if (used < cap - 1) out[used++] = c;
  };
  for (const char* f = format; *f != '\0'; ++f) {
    if (f[0] == '%' && f[1] == 's' && next < count) {
      for (const char* t = args[next++].text; t != nullptr && *t != '\0'; ++t) put(*t);
      f += 1;
    } else if (f[0] == '%' && f[1] == 'l' && f[2] == 'l' && f[3] == 'd' && next < count) {
      const long long v = args[next++].value;
      unsigned long long magnitude = v < 0 ? 0ull - static_cast<unsigned long long>(v) : v;
      char digits[20];
      int n = 0;
      do {
        digits[n++] = static_cast<char>('0' + magnitude % 10);
        magnitude /= 10;
      } while (magnitude != 0);
      if (v < 0) put('-');
      while (n > 0) put(digits[--n]);
      f += 3;
    } else if (!(f[0] == '\n' && f[1] == '\0')) {
      put(*f);
    }
  }
  out[used] = '\0';
}

// Stops the kernel when a value that lives on the device (an id, a target) is out of range: the host
// cannot check it without waiting for the GPU. The first failing thread writes `format`'s text into its
// device's record (cuda/device_fault.h); every failing thread then traps, the others once the text is
// written, so that no trap cuts it short. The stream's next synchronize reports a sticky launch failure
// carrying that text. Never returns.
template <class... Args>
__device__ void device_fail(DeviceFault* record, const char* format, Args... args) {
  const FaultArg list[] = {FaultArg(args)...};
#if defined(QTUNE_CUDA_SIM)
  unsigned int free_record = 0;
  if (std::atomic_ref<unsigned int>(record->claimed).compare_exchange_strong(free_record, 1u)) {
    format_fault(record->text, static_cast<int>(sizeof record->text), format, list, sizeof...(Args));
    std::atomic_ref<unsigned int>(record->claimed).store(2u, std::memory_order_release);
  }
  sim::device_fault(cudaErrorLaunchFailure, "device_fail");
#else
  if (atomicCAS(&record->claimed, 0u, 1u) == 0u) {
    format_fault(record->text, static_cast<int>(sizeof record->text), format, list, sizeof...(Args));
    __threadfence_system();  // the text before the mark, both before the trap
    atomicExch(&record->claimed, 2u);
    __threadfence_system();
  } else {
    while (*static_cast<volatile unsigned int*>(&record->claimed) == 1u) {
    }
  }
  __trap();
#endif
}

// Grid size for kernels that give one row to one block (grid-striding past the limit).
inline unsigned blocks_for_rows(int64_t rows) {
  constexpr int64_t max_blocks = 65535;
  return static_cast<unsigned>(rows < 1 ? 1 : (rows < max_blocks ? rows : max_blocks));
}

}  // namespace qtune::gpu
