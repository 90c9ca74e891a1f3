#include "cuda/sim/streams.h"

#include <atomic>

#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "cuda/sim/device_memory.h"
#include "cuda/sim/errors.h"
#include "cuda/sim/observe.h"
#include "cuda/sim/settings.h"

namespace qtune::sim {
namespace {

struct State {
  std::recursive_mutex mutex;
  std::vector<std::unique_ptr<CUstream_st>> default_streams;
  std::set<CUstream_st*> streams;  // every live stream, the default ones included
  std::set<CUevent_st*> events;
};

State& state() {
  static State* s = [] {
    auto* st = new State;  // never destroyed: streams may be used during static destruction
    for (int d = 0; d < device_count(); ++d) {
      st->default_streams.push_back(std::make_unique<CUstream_st>());
      st->default_streams.back()->device = d;
      st->streams.insert(st->default_streams.back().get());
    }
    return st;
  }();
  return *s;
}

thread_local int current = 0;

void drop_all_work() {
  for (CUstream_st* s : state().streams) s->work.clear();
}

}  // namespace

int current_device() { return current; }
void set_current_device(int device) { current = device; }

CUstream_st* resolve_stream(cudaStream_t stream) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  if (stream == nullptr) return s.default_streams[static_cast<size_t>(current)].get();
  return s.streams.count(stream) != 0 ? stream : nullptr;
}

CUstream_st* create_stream(int device, unsigned flags) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  auto* stream = new CUstream_st;
  stream->device = device;
  stream->flags = flags;
  s.streams.insert(stream);
  return stream;
}

bool destroy_stream(CUstream_st* stream) {
  State& s = state();
  {
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    if (s.streams.count(stream) == 0) return false;
    for (const auto& d : s.default_streams)
      if (d.get() == stream) return false;
  }
  // As on a GPU, work already queued still completes.
  drain(stream);
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.streams.erase(stream);
  delete stream;
  return true;
}

bool is_event(cudaEvent_t event) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  return s.events.count(event) != 0;
}

CUevent_st* create_event(int device, unsigned flags) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  auto* e = new CUevent_st;
  e->device = device;
  e->flags = flags;
  s.events.insert(e);
  return e;
}

bool destroy_event(CUevent_st* event) {
  State& s = state();
  {
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    if (s.events.count(event) == 0) return false;
  }
  // Queued records of this event still refer to it: run them first.
  if (event->recorded && !event->completed) drain(event->stream);
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.events.erase(event);
  delete event;
  return true;
}

void enqueue(CUstream_st* stream, std::function<Fault()> work) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  if (sticky_error() != cudaSuccess) return;
  stream->work.push_back(std::move(work));
}

cudaError_t drain(CUstream_st* stream) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> running(stream->running);
  const int saved = current;
  current = stream->device;
  while (true) {
    std::function<Fault()> work;
    {
      std::lock_guard<std::recursive_mutex> lock(s.mutex);
      if (stream->work.empty() || sticky_error() != cudaSuccess) break;
      work = std::move(stream->work.front());
      stream->work.pop_front();
    }
    Fault f;
    {
      DeviceAccess access;
      f = work();
    }
    if (f) {
      set_sticky(f.code, std::move(f.message));
      std::lock_guard<std::recursive_mutex> lock(s.mutex);
      drop_all_work();
    }
  }
  current = saved;
  return sticky_error();
}

cudaError_t drain_device(int device) {
  State& s = state();
  std::vector<CUstream_st*> streams;
  {
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    for (CUstream_st* stream : s.streams)
      if (stream->device == device) streams.push_back(stream);
  }
  for (CUstream_st* stream : streams) drain(stream);
  return sticky_error();
}

namespace {
std::atomic<uint64_t> host_waits{0}, fp8_matmuls{0}, wmma_mmas{0};
}  // namespace

uint64_t host_wait_count() { return host_waits.load(); }
void count_host_wait() { host_waits.fetch_add(1); }
uint64_t fp8_matmul_count() { return fp8_matmuls.load(); }
void count_fp8_matmul() { fp8_matmuls.fetch_add(1); }
uint64_t wmma_mma_count() { return wmma_mmas.load(); }
void count_wmma_mma() { wmma_mmas.fetch_add(1); }

}  // namespace qtune::sim
