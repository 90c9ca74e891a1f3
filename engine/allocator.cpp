#include "engine/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune {
namespace {

void raise_peak(std::atomic<size_t>& peak, size_t value) {
  size_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

MemoryStats Allocator::stats() const {
  return {allocated_.load(), peak_allocated_.load(), reserved_.load(), peak_reserved_.load(), num_allocations_.load()};
}

void Allocator::reset_peak() {
  peak_allocated_ = allocated_.load();
  peak_reserved_ = reserved_.load();
}

void Allocator::record_alloc(size_t nbytes) {
  raise_peak(peak_allocated_, allocated_.fetch_add(nbytes) + nbytes);
  num_allocations_.fetch_add(1);
}
void Allocator::record_free(size_t nbytes) { allocated_.fetch_sub(nbytes); }
void Allocator::record_reserve(size_t nbytes) { raise_peak(peak_reserved_, reserved_.fetch_add(nbytes) + nbytes); }
void Allocator::record_release(size_t nbytes) { reserved_.fetch_sub(nbytes); }

// CPU memory, 64-byte aligned so SIMD kernels can use aligned loads on fresh buffers.
//
// Blocks of 1 MiB and more are cached: a training step frees and re-allocates the same activation
// sizes every step, and each fresh large block from the system is a new mapping whose every page
// faults and is zeroed on first touch (the 131 MB logits of a 32000-token vocabulary at 1024 tokens
// alone cost 32 thousand faults per step). A freed block goes to a free list keyed by its size rounded
// up to 1 MiB, and the next request of that rounded size takes it back. Small blocks go straight to
// malloc, which recycles them well on its own. `allocated` counts the bytes tensors asked for, exactly;
// `reserved` adds the rounding and the cached blocks. The cache never holds more bytes than live large
// blocks ever held at once, so an unusual mix of sizes cannot make it grow without bound.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes < kCacheFrom) {
      record_alloc(nbytes);
      record_reserve(nbytes);
      return system_alloc(nbytes);
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
      }
      live_large_ += rounded;
      live_large_high_water_ = std::max(live_large_high_water_, live_large_);
    }
    if (ptr == nullptr) {
      ptr = system_alloc(rounded);
      record_reserve(rounded);
    }
    record_alloc(nbytes);
    return ptr;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    record_free(nbytes);
    if (nbytes < kCacheFrom) {
      std::free(ptr);
      record_release(nbytes);
      return;
    }
    const size_t rounded = round_size(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live_large_ -= rounded;
      if (cached_bytes_ + rounded <= live_large_high_water_) {
        free_blocks_[rounded].push_back(ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
    record_release(rounded);
  }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_blocks_)
      for (void* ptr : blocks) {
        std::free(ptr);
        record_release(size);
      }
    free_blocks_.clear();
    cached_bytes_ = 0;
  }
  Device device() const override { return Device::cpu(); }

 private:
  static constexpr size_t kCacheFrom = size_t{1} << 20;
  static size_t round_size(size_t nbytes) { return (nbytes + kCacheFrom - 1) / kCacheFrom * kCacheFrom; }
  static void* system_alloc(size_t nbytes) {
    const size_t rounded = (nbytes + 63) / 64 * 64;
    void* ptr = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
    QTUNE_CHECK(rounded == 0 || ptr != nullptr, "out of CPU memory allocating ", nbytes, " bytes");
    return ptr;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // rounded size -> cached blocks
  size_t cached_bytes_ = 0;
  size_t live_large_ = 0, live_large_high_water_ = 0;  // rounded bytes of large blocks in use; its maximum
};

Allocator& cpu_allocator() {
  // Never destroyed: tensors in other static objects may be freed after this one would have been.
  static CpuAllocator* instance = new CpuAllocator;
  return *instance;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  return backend_for(device).allocator();
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

}  // namespace qtune
