#pragma once
// Host-to-device uploads that never wait for the GPU. The bytes are copied into a ring of pinned host
// memory and the GPU reads them from there when its stream reaches the copy; an event recorded after
// the copy says when that part of the ring may be written again. The caller's buffer is free again at
// return, as with a blocking copy. (From pageable memory cudaMemcpyAsync may synchronize the stream,
// and the caller could not free its buffer otherwise.)
#include <cuda_runtime.h>

#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

namespace qtune::gpu {

class PinnedStaging {
 public:
  // The ring's size: uploads above a quarter of it (model weights, not a step's tokens) are not staged.
  static constexpr size_t kCapacity = size_t{16} << 20;

  PinnedStaging() = default;
  // The ring and events are not released: the backend lives until exit, when the driver reclaims them
  // (the runtime may already be torn down when static destructors run).
  ~PinnedStaging() = default;
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Queues the copy of `bytes` from src (host) to dst (device) on `stream` and returns true; false, doing
  // nothing, when the upload is too large to stage.
  bool upload(void* dst, const void* src, size_t bytes, cudaStream_t stream);

 private:
  struct Slot {
    size_t begin, end;
    cudaEvent_t done;
  };
  // Makes [begin, end) of the ring free: slots over it are retired, waiting only for unfinished ones.
  void reclaim(size_t begin, size_t end);

  std::mutex mutex_;
  unsigned char* ring_ = nullptr;  // kCapacity bytes of pinned memory, allocated at the first upload
  size_t head_ = 0;                // where the next slot starts
  std::deque<Slot> in_flight_;     // oldest first
  std::vector<cudaEvent_t> spare_events_;
};

}  // namespace qtune::gpu
