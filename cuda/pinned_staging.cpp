#include "cuda/pinned_staging.h"

#include <cstring>

#include "cuda/cuda_check.h"

namespace qtune::gpu {
namespace {

constexpr size_t kSlotAlignment = 256;

}  // namespace

void PinnedStaging::reclaim(size_t begin, size_t end) {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->end <= begin || it->begin >= end) {
      ++it;
      continue;
    }
    // Normally long done: the ring holds many steps' uploads before it comes round.
    if (cudaEventQuery(it->done) != cudaSuccess) QTUNE_CUDA_CHECK(cudaEventSynchronize(it->done));
    spare_events_.push_back(it->done);
    it = in_flight_.erase(it);
  }
}

bool PinnedStaging::upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes > kCapacity / 4) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  if (ring_ == nullptr) QTUNE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ring_), kCapacity));
  const size_t size = (bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
  if (head_ + size > kCapacity) head_ = 0;
  reclaim(head_, head_ + size);
  std::memcpy(ring_ + head_, src, bytes);
  QTUNE_CUDA_CHECK(cudaMemcpyAsync(dst, ring_ + head_, bytes, cudaMemcpyHostToDevice, stream));
  cudaEvent_t done = nullptr;
  if (spare_events_.empty()) {
    QTUNE_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  } else {
    done = spare_events_.back();
    spare_events_.pop_back();
  }
  QTUNE_CUDA_CHECK(cudaEventRecord(done, stream));
  in_flight_.push_back({head_, head_ + size, done});
  head_ += size;
  return true;
}

}  // namespace qtune::gpu
