// The CUDA runtime functions of include/cuda_runtime.h over the simulator's devices, memory registry
// and streams. Every call first returns a sticky fault, as the real runtime does after one.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/sim/device_memory.h"
#include "cuda/sim/errors.h"
#include "cuda/sim/observe.h"
#include "cuda/sim/settings.h"
#include "cuda/sim/streams.h"

using namespace qtune::sim;

namespace {

#define QTUNE_SIM_RETURN_IF_STICKY()                                         \
  do {                                                                       \
    if (const cudaError_t s_ = sticky_error(); s_ != cudaSuccess) return s_; \
  } while (0)

std::string pointer_str(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

bool is_device(const void* p, size_t bytes) {
  const auto a = find_allocation(p, bytes);
  return a && a->device >= 0;
}

bool is_pinned(const void* p, size_t bytes) {
  const auto a = find_allocation(p, bytes);
  return a && a->device < 0;
}

// Host memory is anything the registry does not hold as device memory; a range that only starts in a
// device allocation is an overrun of it.
bool overlaps_device(const void* p) {
  const auto a = find_allocation(p, 1);
  return a && a->device >= 0;
}

// The direction a copy really has, checked against the kind the caller named.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind& kind, const char* call) {
  const bool dst_dev = is_device(dst, bytes), src_dev = is_device(src, bytes);
  if (overlaps_device(dst) && !dst_dev)
    return fail(cudaErrorInvalidValue, std::string(call) + ": the destination range " + pointer_str(dst) + " + " +
                                           std::to_string(bytes) + " runs past the end of its device allocation");
  if (overlaps_device(src) && !src_dev)
    return fail(cudaErrorInvalidValue, std::string(call) + ": the source range " + pointer_str(src) + " + " +
                                           std::to_string(bytes) + " runs past the end of its device allocation");
  cudaMemcpyKind actual = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                  : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  if (kind != cudaMemcpyDefault && kind != actual) {
    static const char* names[] = {"host to host", "host to device", "device to host", "device to device", "default"};
    return fail(cudaErrorInvalidValue, std::string(call) + " named " + names[kind] + " but copies " + names[actual] +
                                           " (destination " + pointer_str(dst) + ", source " + pointer_str(src) + ")");
  }
  kind = actual;
  return cudaSuccess;
}

qtune::sim::Fault copy_now(void* dst, const void* src, size_t bytes) {
  std::memmove(dst, src, bytes);
  return {};
}

}  // namespace

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorIllegalInstruction:
      return "cudaErrorIllegalInstruction";
    case cudaErrorMisalignedAddress:
      return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  if (const char* m = message_for(error); m != nullptr) return m;
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    default:
      return cudaGetErrorName(error);
  }
}

cudaError_t cudaGetLastError() { return take_last_error(); }
cudaError_t cudaPeekAtLastError() { return peek_last_error(); }

cudaError_t cudaGetDeviceCount(int* count) {
  *count = device_count();
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count())
    return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + "): the simulator has " +
                                            std::to_string(device_count()) + " device(s) (QTUNE_SIM_DEVICES)");
  set_current_device(device);
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = current_device();
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= device_count())
    return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no device " + std::to_string(device));
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "qtune CUDA simulator (sm_90-like)");
  prop->totalGlobalMem = device_memory_bytes();
  prop->sharedMemPerBlock = kSharedMemoryPerBlock;
  prop->sharedMemPerBlockOptin = kSharedMemoryPerBlock;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = kMultiprocessors;
  prop->major = 9;
  prop->minor = 0;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->l2CacheSize = 50u << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  count_host_wait();
  return drain_device(current_device());
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *total_bytes = device_memory_bytes();
  *free_bytes = *total_bytes - device_used(current_device());
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *ptr = device_allocate(current_device(), bytes);
  if (*ptr == nullptr)
    return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) +
                                               " bytes: cuda:" + std::to_string(current_device()) + " has " +
                                               std::to_string(device_memory_bytes() - device_used(current_device())) +
                                               " bytes free (QTUNE_SIM_MEMORY_MB sets its size)");
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  const auto a = find_allocation(ptr, 0);
  if (!a || a->device < 0 || a->begin != reinterpret_cast<uintptr_t>(ptr))
    return fail(cudaErrorInvalidValue, "cudaFree(" + pointer_str(ptr) + "): not an allocation of cudaMalloc");
  // cudaFree waits for the device, so no queued work still uses the memory.
  count_host_wait();
  drain_device(a->device);
  device_free(ptr);
  return sticky_error();
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *ptr = pinned_allocate(bytes);
  return *ptr != nullptr ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaMallocHost: out of host memory");
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *ptr = pinned_allocate(bytes, (flags & cudaHostAllocMapped) != 0);
  return *ptr != nullptr ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaHostAlloc: out of host memory");
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  // Pinned memory may be the source or target of queued copies.
  count_host_wait();
  for (int d = 0; d < device_count(); ++d) drain_device(d);
  if (!pinned_free(ptr))
    return fail(cudaErrorInvalidValue, "cudaFreeHost(" + pointer_str(ptr) + "): not pinned memory");
  return sticky_error();
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  QTUNE_SIM_RETURN_IF_STICKY();
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpy"); e != cudaSuccess) return e;
  // Synchronous with respect to the legacy default stream, which waits for the device's other work.
  count_host_wait();
  if (const cudaError_t e = drain_device(current_device()); e != cudaSuccess) return e;
  DeviceAccess access;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  QTUNE_SIM_RETURN_IF_STICKY();
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: not a stream");
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync"); e != cudaSuccess) return e;
  if (kind == cudaMemcpyHostToDevice && !is_pinned(src, bytes)) {
    // From pageable memory the runtime stages the source before returning: the caller may reuse it.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + bytes);
    enqueue(s, [dst, staged] { return copy_now(dst, staged->data(), staged->size()); });
    return cudaSuccess;
  }
  if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst, bytes)) {
    // Into pageable memory the call returns only once the copy is done.
    count_host_wait();
    enqueue(s, [dst, src, bytes] { return copy_now(dst, src, bytes); });
    return drain(s);
  }
  // Pinned host memory and device memory are read and written when the stream reaches the copy.
  enqueue(s, [dst, src, bytes] { return copy_now(dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  QTUNE_SIM_RETURN_IF_STICKY();
  if (const cudaError_t e = cudaMemsetAsync(dst, value, bytes, nullptr); e != cudaSuccess) return e;
  return drain_device(current_device());
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  QTUNE_SIM_RETURN_IF_STICKY();
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: not a stream");
  if (bytes == 0) return cudaSuccess;
  if (!is_device(dst, bytes))
    return fail(cudaErrorInvalidValue, "cudaMemsetAsync(" + pointer_str(dst) + ", " + std::to_string(bytes) +
                                           " bytes): not within one device allocation");
  enqueue(s, [dst, value, bytes] {
    std::memset(dst, value, bytes);
    return qtune::sim::Fault{};
  });
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *stream = create_stream(current_device(), flags);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr || !destroy_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: not a stream created by cudaStreamCreate");
  return sticky_error();
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: not a stream");
  count_host_wait();
  return drain(s);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  QTUNE_SIM_RETURN_IF_STICKY();
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr || !is_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: bad handle");
  if (!event->recorded) return cudaSuccess;  // waiting on a never-recorded event does nothing
  CUstream_st* other = event->stream;
  // When the waiting stream reaches this point, everything the other stream had queued up to the
  // record runs first (running its later work early is a schedule a GPU may also pick).
  enqueue(s, [other] {
    drain(other);
    return qtune::sim::Fault{};
  });
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  QTUNE_SIM_RETURN_IF_STICKY();
  *event = create_event(current_device(), flags);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!destroy_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not an event");
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  QTUNE_SIM_RETURN_IF_STICKY();
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr || !is_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: bad handle");
  event->recorded = true;
  event->completed = false;
  event->stream = s;
  enqueue(s, [event] {
    event->completed = true;
    event->when = std::chrono::steady_clock::now();
    return qtune::sim::Fault{};
  });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!is_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not an event");
  count_host_wait();
  if (event->recorded && !event->completed) return drain(event->stream);
  return sticky_error();
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  QTUNE_SIM_RETURN_IF_STICKY();
  if (!is_event(start) || !is_event(end))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: bad handle");
  if ((start->flags & cudaEventDisableTiming) != 0 || (end->flags & cudaEventDisableTiming) != 0)
    return fail(cudaErrorInvalidResourceHandle,
                "cudaEventElapsedTime: an event was created with cudaEventDisableTiming");
  if (!start->completed || !end->completed)
    return fail(cudaErrorNotReady, "cudaEventElapsedTime: an event has not completed (synchronize it first)");
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
