#pragma once
#include <atomic>
#include <cstddef>

#include "engine/device.h"

namespace qtune {

// Bytes handed out by one device's allocator. `allocated` is exactly what live tensors asked for;
// `reserved` also counts block rounding and the blocks a caching allocator keeps for reuse (the CPU
// allocator caches blocks of 1 MiB and more; below that reserved moves with allocated).
struct MemoryStats {
  size_t allocated = 0;
  size_t peak_allocated = 0;
  size_t reserved = 0;
  size_t peak_reserved = 0;
  size_t num_allocations = 0;  // calls to allocate() since start
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual Device device() const = 0;
  MemoryStats stats() const;
  void reset_peak();
  // Returns cached blocks to the system (no-op for allocators that cache nothing).
  virtual void empty_cache() {}

 protected:
  void record_alloc(size_t nbytes);
  void record_free(size_t nbytes);
  void record_reserve(size_t nbytes);
  void record_release(size_t nbytes);

 private:
  std::atomic<size_t> allocated_{0}, peak_allocated_{0}, reserved_{0}, peak_reserved_{0}, num_allocations_{0};
};

// The process-wide allocator of a device (created on first use).
Allocator& allocator_for(Device device);
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);

}  // namespace qtune
