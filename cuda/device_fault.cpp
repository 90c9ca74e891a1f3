#include "cuda/device_fault.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include "cuda/cuda_check.h"

namespace qtune::gpu {
namespace {

std::atomic<DeviceFault*> allocated{nullptr};

}  // namespace

DeviceFault* device_fault_record() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* memory = nullptr;
    // Pinned memory is mapped into every device's address space at its host address (unified addressing).
    QTUNE_CUDA_CHECK(cudaMallocHost(&memory, sizeof(DeviceFault)));
    std::memset(memory, 0, sizeof(DeviceFault));
    allocated.store(static_cast<DeviceFault*>(memory), std::memory_order_release);
  });
  return allocated.load(std::memory_order_acquire);
}

std::string device_fault_text() {
  // Read after the stream that failed was waited for: the kernel is gone. Never allocates, since it runs
  // while an error is reported, possibly with the context lost.
  const volatile DeviceFault* record = allocated.load(std::memory_order_acquire);
  if (record == nullptr || record->claimed != 2) return {};  // 2: written (device_util.cuh)
  std::string text;
  for (size_t i = 0; i < sizeof record->text && record->text[i] != '\0'; ++i) text += record->text[i];
  return text;
}

std::string cuda_error_message(cudaError_t status) {
  std::string message = detail::concat("CUDA error ", cudaGetErrorName(status), ": ", cudaGetErrorString(status));
  // A trap shows as a launch failure; any other error is not a kernel's device_fail.
  if (status == cudaErrorLaunchFailure) {
    const std::string said = device_fault_text();
    if (!said.empty()) message += "; the kernel stopped: " + said;
  }
  return message;
}

}  // namespace qtune::gpu
