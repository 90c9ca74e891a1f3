#pragma once
// A caching device allocator. cudaMalloc/cudaFree synchronize the device and cost tens of
// microseconds, and a training step frees and re-allocates the same activation sizes every step, so
// freed blocks go to a free list keyed by their rounded size and the next request of that size takes
// one back. `allocated` counts bytes held by tensors, `reserved` bytes obtained from cudaMalloc.
//
// Every kernel of a device runs on its one stream, so a block freed after queueing work on it can be
// handed out again at once: any later use is queued behind that work.
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/allocator.h"

namespace qtune::gpu {

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device_index) : index_(device_index) {}
  // Cached blocks are not returned here: the backend lives until exit, when the driver reclaims them.
  ~CachingAllocator() override = default;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  Device device() const override { return Device::cuda(index_); }
  void empty_cache() override;

  // The block size a request of nbytes occupies: 512-byte steps below 1 MiB, 2 MiB steps above, so
  // nearby sizes share a free list without wasting more than a few percent.
  static size_t round_size(size_t nbytes);
  size_t cached_bytes() const;

 private:
  void* cuda_malloc(size_t rounded);
  void release_all_locked();

  int index_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // rounded size -> blocks
  size_t cached_bytes_ = 0;
};

}  // namespace qtune::gpu
