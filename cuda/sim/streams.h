#pragma once
// Streams and events of the simulated runtime. Work queued on a stream runs in order when someone
// waits for it (a synchronize, a query, a blocking copy, an event wait), on the waiting host thread:
// the host never sees a stream's results before it has synchronized with it, as on a GPU. Streams
// of different host threads run at the same time (ranks of a simulated NCCL communicator wait for
// one another inside their streams); one stream runs on one thread at a time. A fault in a kernel
// becomes the sticky error and drops the queued work of every stream.
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>

#include <driver_types.h>

#include "cuda/sim/block_scheduler.h"

struct CUstream_st {
  int device = 0;
  unsigned flags = 0;
  std::deque<std::function<qtune::sim::Fault()>> work;  // guarded by the streams' state mutex
  std::recursive_mutex running;                         // held while this stream's work executes
  std::atomic<uint64_t> launches{0};                    // kernels queued so far: each one's seed offset
};

struct CUevent_st {
  int device = 0;
  unsigned flags = 0;
  bool recorded = false;
  bool completed = false;
  CUstream_st* stream = nullptr;
  std::chrono::steady_clock::time_point when{};
};

namespace qtune::sim {

int current_device();
void set_current_device(int device);

// nullptr stands for the current device's default stream. Returns nullptr for a handle that is not a
// live stream.
CUstream_st* resolve_stream(cudaStream_t stream);
CUstream_st* create_stream(int device, unsigned flags);
bool destroy_stream(CUstream_st* stream);
bool is_event(cudaEvent_t event);
CUevent_st* create_event(int device, unsigned flags);
bool destroy_event(CUevent_st* event);

void enqueue(CUstream_st* stream, std::function<Fault()> work);
// Runs the queued work; returns the sticky error if any work faulted (now or before).
cudaError_t drain(CUstream_st* stream);
cudaError_t drain_device(int device);

}  // namespace qtune::sim
