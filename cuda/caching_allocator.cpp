#include "cuda/caching_allocator.h"

#include "cuda/cuda_check.h"

namespace qtune::gpu {

size_t CachingAllocator::round_size(size_t nbytes) {
  constexpr size_t small_step = 512, large_step = size_t{2} << 20, large_from = size_t{1} << 20;
  if (nbytes <= large_from) return (nbytes + small_step - 1) / small_step * small_step;
  return (nbytes + large_step - 1) / large_step * large_step;
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_bytes_;
}

void* CachingAllocator::cuda_malloc(size_t rounded) {
  QTUNE_CUDA_CHECK(cudaSetDevice(index_));
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, rounded);
  if (status == cudaErrorMemoryAllocation) {
    // Cached blocks of other sizes may be what stands in the way: give them back and try once more.
    (void)cudaGetLastError();
    release_all_locked();
    status = cudaMalloc(&ptr, rounded);
  }
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    const MemoryStats s = stats();
    QTUNE_FAIL("out of GPU memory on cuda:", index_, " allocating ", rounded, " bytes (", s.allocated,
               " bytes in tensors, ", s.reserved, " reserved by qtune, ", free_bytes, " free of ", total_bytes, ")");
  }
  QTUNE_CUDA_CHECK(status);
  record_reserve(rounded);
  return ptr;
}

void* CachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) {
    record_alloc(0);
    return nullptr;
  }
  const size_t rounded = round_size(nbytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_blocks_.find(rounded);
    if (it != free_blocks_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= rounded;
    } else {
      ptr = cuda_malloc(rounded);
    }
  }
  record_alloc(nbytes);
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  record_free(nbytes);
  if (ptr == nullptr) return;
  const size_t rounded = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  free_blocks_[rounded].push_back(ptr);
  cached_bytes_ += rounded;
}

void CachingAllocator::release_all_locked() {
  if (cached_bytes_ == 0) return;
  // A cached block may still be read by queued kernels; wait for them before it leaves the process.
  QTUNE_CUDA_CHECK(cudaSetDevice(index_));
  QTUNE_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [size, blocks] : free_blocks_) {
    for (void* ptr : blocks) {
      QTUNE_CUDA_CHECK(cudaFree(ptr));
      record_release(size);
    }
    blocks.clear();
  }
  free_blocks_.clear();
  cached_bytes_ = 0;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_all_locked();
}

}  // namespace qtune::gpu
