#include "engine/allocator.h"

#include <cstdlib>
#include <new>

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

// CPU memory: 64-byte aligned so SIMD kernels can use aligned loads on fresh buffers.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t rounded = (nbytes + 63) / 64 * 64;
    void* ptr = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
    QTUNE_CHECK(rounded == 0 || ptr != nullptr, "out of CPU memory allocating ", nbytes, " bytes");
    record_alloc(nbytes);
    record_reserve(nbytes);
    return ptr;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    std::free(ptr);
    record_free(nbytes);
    record_release(nbytes);
  }
  Device device() const override { return Device::cpu(); }
};

Allocator& cpu_allocator() {
  static CpuAllocator instance;
  return instance;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  return backend_for(device).allocator();
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

}  // namespace qtune
