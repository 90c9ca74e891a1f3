#include "cuda/device_fault.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include "cuda/cuda_check.h"

namespace qtune::gpu {
namespace {

constexpr int kMaxDevices = 64;
std::atomic<DeviceFault*> records{nullptr};

}  // namespace

DeviceFault* device_fault_record(int index) {
  QTUNE_CHECK(index >= 0 && index < kMaxDevices, "device fault record: device ", index, " is outside 0..",
              kMaxDevices - 1);
  static std::once_flag once;
  std::call_once(once, [] {
    void* memory = nullptr;
    // Mapped and portable: every device reads and writes it at its host address (unified addressing).
    QTUNE_CUDA_CHECK(
        cudaHostAlloc(&memory, kMaxDevices * sizeof(DeviceFault), cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(memory, 0, kMaxDevices * sizeof(DeviceFault));
    records.store(static_cast<DeviceFault*>(memory), std::memory_order_release);
  });
  return records.load(std::memory_order_acquire) + index;
}

std::string device_fault_text() {
  // Read after the failed stream was waited for, so the kernel is gone. Allocates no device or pinned memory:
  // it runs while an error is reported.
  const DeviceFault* all = records.load(std::memory_order_acquire);
  int device = 0;
  if (all == nullptr || cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return {};
  const volatile DeviceFault* record = all + device;
  if (record->claimed != 2) return {};  // 2: written (device_util.cuh)
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
