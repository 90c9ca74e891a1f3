#include "cuda/sim/launch.h"

#include <cstdio>
#include <mutex>

#include "cuda/sim/block_scheduler.h"
#include "cuda/sim/device_memory.h"
#include "cuda/sim/errors.h"
#include "cuda/sim/settings.h"
#include "cuda/sim/streams.h"

// Sanitizer runtimes call this before they exit on an error; declared weak so that plain builds link.
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace qtune::sim {
namespace {

void report_position_on_death() {
  const std::string where = where_running();
  if (!where.empty()) std::fprintf(stderr, "qtune CUDA simulator: the error above happened in %s\n", where.c_str());
}

std::string dims(dim3 d) {
  char text[48];
  std::snprintf(text, sizeof text, "(%u,%u,%u)", d.x, d.y, d.z);
  return text;
}

}  // namespace

bool check_pointer_argument(const std::string& kernel, int index, const void* pointer, cudaStream_t stream) {
  if (pointer == nullptr) return true;
  const CUstream_st* s = resolve_stream(stream);
  const int device = s != nullptr ? s->device : current_device();
  const auto a = find_allocation(pointer, 0);
  // Pinned memory allocated as mapped (cudaHostAllocMapped) is the device's to use at its host address. A GPU
  // under unified addressing maps all pinned memory; the simulator only what asked to be, so that a kernel
  // handed a staging buffer by mistake still fails here.
  if (a && (a->device == device || (a->device < 0 && a->mapped))) return true;
  char text[64];
  std::snprintf(text, sizeof text, "%p", pointer);
  const std::string what =
      !a ? "host memory"
         : (a->device < 0 ? "unmapped pinned host memory" : "memory of cuda:" + std::to_string(a->device));
  fail(cudaErrorInvalidValue, "kernel " + kernel + ": argument " + std::to_string(index) + " (" + text + ") is " +
                                  what + ", not memory of cuda:" + std::to_string(device));
  return false;
}

void enqueue_kernel(const std::string& kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                    std::shared_ptr<const void> params, void (*run_thread)(const void* params)) {
  static std::once_flag death_callback;
  std::call_once(death_callback, [] {
    if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(&report_position_on_death);
  });
  if (sticky_error() != cudaSuccess) return;
  CUstream_st* s = resolve_stream(stream);
  if (s == nullptr) {
    fail(cudaErrorInvalidResourceHandle, "kernel " + kernel + ": launched on a handle that is not a stream");
    return;
  }
  if (s->device != current_device()) {
    fail(cudaErrorInvalidResourceHandle, "kernel " + kernel +
                                             ": launched on a stream of cuda:" + std::to_string(s->device) +
                                             " while cuda:" + std::to_string(current_device()) + " is current");
    return;
  }
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const bool bad_block = block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
                         block.z > 64 || threads > static_cast<uint64_t>(kMaxThreadsPerBlock);
  const bool bad_grid =
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535;
  if (bad_block || bad_grid) {
    fail(cudaErrorInvalidConfiguration, "kernel " + kernel + ": grid " + dims(grid) + " of blocks " + dims(block) +
                                            (bad_block ? " (a block holds 1 to 1024 threads, at most (1024,1024,64))"
                                                       : " (a grid holds 1 to (2^31-1, 65535, 65535) blocks)"));
    return;
  }
  if (shared_bytes > kSharedMemoryPerBlock) {
    fail(cudaErrorInvalidValue, "kernel " + kernel + ": " + std::to_string(shared_bytes) +
                                    " bytes of dynamic shared memory, over the device limit of " +
                                    std::to_string(kSharedMemoryPerBlock));
    return;
  }
  KernelRun run;
  run.name = kernel;
  run.grid = grid;
  run.block = block;
  run.dynamic_shared_bytes = shared_bytes;
  run.shared_limit_bytes = kSharedMemoryPerBlock;
  run.run_thread = run_thread;
  const uint64_t launch = s->launches.fetch_add(1);
  enqueue(s, [run = std::move(run), params = std::move(params), launch]() mutable {
    run.params = params.get();
    return run_kernel(run, seed(), launch);
  });
}

}  // namespace qtune::sim
