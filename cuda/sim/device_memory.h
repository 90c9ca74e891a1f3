#pragma once
// Device memory of the simulated GPUs: host memory registered as belonging to a device. The registry
// answers which allocation (if any) holds an address, so copies check their direction and kernels
// their pointer arguments. In AddressSanitizer builds device memory is poisoned while host code runs
// and opened only while the simulator executes a copy or a kernel, so a host dereference of a device
// pointer is reported where it happens.
#include <cstddef>
#include <cstdint>
#include <optional>

namespace qtune::sim {

struct Allocation {
  uintptr_t begin = 0;
  size_t bytes = 0;
  int device = -1;      // -1: pinned host memory (cudaMallocHost, cudaHostAlloc)
  bool mapped = false;  // pinned memory kernels may read and write (cudaHostAllocMapped)
};

// nullptr when the device's memory is exhausted.
void* device_allocate(int device, size_t bytes);
// false when ptr is not the start of a device allocation.
bool device_free(void* ptr);
size_t device_used(int device);

void* pinned_allocate(size_t bytes, bool mapped = false);
bool pinned_free(void* ptr);

// The device or pinned allocation holding [ptr, ptr + bytes), if one holds all of it.
std::optional<Allocation> find_allocation(const void* ptr, size_t bytes = 1);

// While one lives, device memory may be touched (the simulator is executing device work).
class DeviceAccess {
 public:
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

}  // namespace qtune::sim
