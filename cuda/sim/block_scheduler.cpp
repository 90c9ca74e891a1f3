#include "cuda/sim/block_scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "cuda/sim/fiber.h"
#include "cuda/sim/thread_api.h"

namespace qtune::sim {
namespace {

enum class ThreadState { runnable, at_barrier, at_warp, exited };

struct SimThread {
  ThreadPosition pos{};
  int linear = 0;
  Fiber* fiber = nullptr;
  ThreadState state = ThreadState::runnable;
  uint64_t warp_result = 0;
  WarpOp waiting_op = WarpOp::sync;
  unsigned waiting_mask = 0;
};

struct Rendezvous {
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  unsigned arrived = 0;
  uint64_t values[32] = {};
  int args[32] = {};
  int width = 32;
};

struct SharedArray {
  void* data;
  size_t alignment;
};

struct Block {
  const KernelRun* kernel = nullptr;
  std::mt19937_64* rng = nullptr;
  std::vector<SimThread> threads;
  int barrier_arrived = 0;
  int barrier_pending = 0;  // predicates counted at the barrier being filled
  int barrier_result = 0;   // the count of the barrier last passed
  std::vector<std::vector<Rendezvous>> warps;
  std::vector<int> woken;
  std::map<std::pair<const char*, int>, SharedArray> shared;
  size_t shared_used = 0;
  SharedArray dynamic{nullptr, 128};  // as QTUNE_DYNAMIC_SHARED declares it
  Fault fault;

  ~Block() {
    for (auto& [key, array] : shared) ::operator delete(array.data, std::align_val_t(array.alignment));
    if (dynamic.data != nullptr) ::operator delete(dynamic.data, std::align_val_t(dynamic.alignment));
  }
};

// Thrown by device_fault through the faulting thread's frames, so that what they own is destroyed
// (an abandoned fiber would leak it); caught where the thread started.
struct KernelAbort {};

thread_local Block* active_block = nullptr;
thread_local SimThread* active_thread = nullptr;
thread_local std::vector<std::unique_ptr<Fiber>> fiber_pool;

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::shfl:
      return "__shfl_sync";
    case WarpOp::shfl_up:
      return "__shfl_up_sync";
    case WarpOp::shfl_down:
      return "__shfl_down_sync";
    case WarpOp::shfl_xor:
      return "__shfl_xor_sync";
    case WarpOp::ballot:
      return "__ballot_sync";
    case WarpOp::any:
      return "__any_sync";
    case WarpOp::all:
      return "__all_sync";
    case WarpOp::sync:
      return "__syncwarp";
  }
  return "?";
}

std::string dim_str(unsigned x, unsigned y, unsigned z) {
  char text[48];
  std::snprintf(text, sizeof text, "(%u,%u,%u)", x, y, z);
  return text;
}

std::string hex(unsigned v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}

std::string location(const Block& b, const SimThread* t) {
  std::string text = "kernel " + b.kernel->name + ", block " +
                     dim_str(t != nullptr ? t->pos.block_idx.x : 0, t != nullptr ? t->pos.block_idx.y : 0,
                             t != nullptr ? t->pos.block_idx.z : 0);
  if (t != nullptr) text += ", thread " + dim_str(t->pos.thread_idx.x, t->pos.thread_idx.y, t->pos.thread_idx.z);
  return text;
}

Block& block_or_die(const char* what) {
  if (active_block == nullptr || active_thread == nullptr) {
    std::fprintf(stderr, "qtune CUDA simulator: %s called outside a running kernel\n", what);
    std::abort();
  }
  return *active_block;
}

void fill_garbage(void* data, size_t bytes, std::mt19937_64& rng) {
  // Uninitialized shared memory holds whatever the last block left: random bytes make a read before
  // the first write visible instead of quietly reading zeros.
  auto* p = static_cast<unsigned char*>(data);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t r = rng();
    std::memcpy(p + i, &r, std::min<size_t>(8, bytes - i));
  }
}

void thread_entry(void* arg) {
  auto* t = static_cast<SimThread*>(arg);
  Block& b = *active_block;
  try {
    b.kernel->run_thread(b.kernel->params);
  } catch (const KernelAbort&) {
    // b.fault says why.
  } catch (const std::exception& e) {
    if (!b.fault) b.fault = {cudaErrorLaunchFailure, location(b, t) + ": device code threw " + e.what()};
  } catch (...) {
    if (!b.fault) b.fault = {cudaErrorLaunchFailure, location(b, t) + ": device code threw an unknown exception"};
  }
  t->state = ThreadState::exited;
}

std::string deadlock_report(const Block& b) {
  int waiting = 0, exited = 0, in_warp = 0;
  const SimThread *first_waiting = nullptr, *first_exited = nullptr, *first_warp = nullptr;
  for (const SimThread& t : b.threads) {
    if (t.state == ThreadState::at_barrier && waiting++ == 0) first_waiting = &t;
    if (t.state == ThreadState::exited && exited++ == 0) first_exited = &t;
    if (t.state == ThreadState::at_warp && in_warp++ == 0) first_warp = &t;
  }
  auto idx = [](const SimThread* t) { return dim_str(t->pos.thread_idx.x, t->pos.thread_idx.y, t->pos.thread_idx.z); };
  std::string text = "deadlock: ";
  if (waiting > 0)
    text += std::to_string(waiting) + " thread(s) wait at __syncthreads (first " + idx(first_waiting) + "); ";
  if (in_warp > 0)
    text += std::to_string(in_warp) + " thread(s) wait in " + op_name(first_warp->waiting_op) + " with mask " +
            hex(first_warp->waiting_mask) + " (first " + idx(first_warp) + "); ";
  if (exited > 0) text += std::to_string(exited) + " thread(s) have exited (first " + idx(first_exited) + "); ";
  return text + "every thread of a block must reach each __syncthreads, and every lane of a mask its warp collective";
}

uint64_t shuffle_result(Block& b, const Rendezvous& r, int warp, int lane) {
  const int start = lane & ~(r.width - 1);
  int src = lane;
  switch (r.op) {
    case WarpOp::shfl:
      src = start + (r.args[lane] & (r.width - 1));
      break;
    case WarpOp::shfl_up:
      src = lane - r.args[lane] >= start ? lane - r.args[lane] : lane;
      break;
    case WarpOp::shfl_down:
      src = lane + r.args[lane] < start + r.width ? lane + r.args[lane] : lane;
      break;
    case WarpOp::shfl_xor:
      src = (lane ^ r.args[lane]) < start + r.width ? (lane ^ r.args[lane]) : lane;
      break;
    default:
      break;
  }
  if (src < 0 || src > 31 || (r.mask & (1u << src)) == 0) {
    active_thread = &b.threads[static_cast<size_t>(warp * 32 + lane)];
    device_fault(cudaErrorIllegalInstruction, std::string(op_name(r.op)) + " reads lane " + std::to_string(src) +
                                                  ", which is not in its mask " + hex(r.mask) +
                                                  " (the value of a lane outside the mask is undefined)");
  }
  return r.values[src];
}

void complete(Block& b, Rendezvous& r, int warp) {
  uint64_t ballot = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((r.mask & (1u << lane)) != 0 && r.values[lane] != 0) ballot |= 1u << lane;
  for (int lane = 0; lane < 32; ++lane) {
    if ((r.mask & (1u << lane)) == 0) continue;
    SimThread& t = b.threads[static_cast<size_t>(warp * 32 + lane)];
    switch (r.op) {
      case WarpOp::ballot:
        t.warp_result = ballot;
        break;
      case WarpOp::any:
        t.warp_result = ballot != 0;
        break;
      case WarpOp::all:
        t.warp_result = ballot == r.mask;
        break;
      case WarpOp::sync:
        t.warp_result = 0;
        break;
      default:
        t.warp_result = shuffle_result(b, r, warp, lane);
    }
    t.state = ThreadState::runnable;
    b.woken.push_back(t.linear);
  }
}

Fault run_block(const KernelRun& kernel, uint3 block_idx, std::mt19937_64& rng, bool shuffled) {
  Block b;
  b.kernel = &kernel;
  b.rng = &rng;
  const int n = static_cast<int>(kernel.block.x * kernel.block.y * kernel.block.z);
  while (fiber_pool.size() < static_cast<size_t>(n)) fiber_pool.push_back(std::make_unique<Fiber>());
  b.threads.resize(static_cast<size_t>(n));
  b.warps.resize(static_cast<size_t>((n + 31) / 32));
  if (kernel.dynamic_shared_bytes > 0) {
    b.dynamic.data = ::operator new(kernel.dynamic_shared_bytes, std::align_val_t(b.dynamic.alignment));
    fill_garbage(b.dynamic.data, kernel.dynamic_shared_bytes, rng);
  }
  b.shared_used = kernel.dynamic_shared_bytes;
  for (int i = 0; i < n; ++i) {
    SimThread& t = b.threads[static_cast<size_t>(i)];
    t.linear = i;
    t.pos.thread_idx = {static_cast<unsigned>(i) % kernel.block.x,
                        static_cast<unsigned>(i) / kernel.block.x % kernel.block.y,
                        static_cast<unsigned>(i) / (kernel.block.x * kernel.block.y)};
    t.pos.block_idx = block_idx;
    t.pos.block_dim = kernel.block;
    t.pos.grid_dim = kernel.grid;
    t.fiber = fiber_pool[static_cast<size_t>(i)].get();
    t.fiber->start(&thread_entry, &t);
  }
  std::vector<int> ready(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ready[static_cast<size_t>(i)] = i;

  Block* const outer_block = active_block;
  active_block = &b;
  while (true) {
    if (shuffled) std::shuffle(ready.begin(), ready.end(), rng);
    for (int i : ready) {
      active_thread = &b.threads[static_cast<size_t>(i)];
      active_thread->fiber->resume();
      active_thread = nullptr;
      if (b.fault) break;
    }
    if (b.fault) break;
    ready.swap(b.woken);
    b.woken.clear();
    if (b.barrier_arrived == n) {
      b.barrier_arrived = 0;
      b.barrier_result = b.barrier_pending;
      b.barrier_pending = 0;
      for (SimThread& t : b.threads) {
        t.state = ThreadState::runnable;
        ready.push_back(t.linear);
      }
    }
    if (!ready.empty()) continue;
    const bool all_exited = std::all_of(b.threads.begin(), b.threads.end(),
                                        [](const SimThread& t) { return t.state == ThreadState::exited; });
    if (!all_exited) b.fault = {cudaErrorLaunchFailure, location(b, nullptr) + ": " + deadlock_report(b)};
    break;
  }
  active_block = outer_block;
  if (b.fault)
    for (SimThread& t : b.threads) t.fiber->discard();
  return b.fault;
}

}  // namespace

const ThreadPosition& position() {
  block_or_die("a CUDA built-in variable (threadIdx, blockIdx, blockDim, gridDim)");
  return active_thread->pos;
}

int block_barrier(int predicate) {
  Block& b = block_or_die("__syncthreads");
  SimThread* self = active_thread;
  self->state = ThreadState::at_barrier;
  ++b.barrier_arrived;
  b.barrier_pending += predicate;
  Fiber::yield();
  return b.barrier_result;
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Block& b = block_or_die(op_name(op));
  SimThread* self = active_thread;
  const int warp = self->linear / 32, lane = self->linear % 32;
  const int threads = static_cast<int>(b.threads.size());
  const int lanes_here = std::min(32, threads - warp * 32);
  const unsigned existing = lanes_here == 32 ? 0xffffffffu : ((1u << lanes_here) - 1);
  if ((mask & (1u << lane)) == 0)
    device_fault(cudaErrorIllegalInstruction, std::string(op_name(op)) + " with mask " + hex(mask) +
                                                  " that leaves out the calling lane " + std::to_string(lane));
  if ((mask & ~existing) != 0)
    device_fault(cudaErrorIllegalInstruction, std::string(op_name(op)) + " with mask " + hex(mask) +
                                                  " names lanes past the block's last thread (warp " +
                                                  std::to_string(warp) + " has " + std::to_string(lanes_here) +
                                                  " lanes)");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    device_fault(cudaErrorIllegalInstruction,
                 std::string(op_name(op)) + " with width " + std::to_string(width) + " (a power of two up to 32)");
  auto& pending = b.warps[static_cast<size_t>(warp)];
  Rendezvous* r = nullptr;
  for (Rendezvous& p : pending) {
    if (p.mask == mask) {
      if (p.op != op)
        device_fault(cudaErrorIllegalInstruction, std::string("lanes of mask ") + hex(mask) + " meet in " +
                                                      op_name(p.op) + " and " + op_name(op) + " at the same time");
      r = &p;
    } else if ((p.mask & mask) != 0) {
      device_fault(cudaErrorIllegalInstruction, std::string(op_name(op)) + " with mask " + hex(mask) +
                                                    " overlaps a pending " + op_name(p.op) + " with mask " +
                                                    hex(p.mask) + ": the lanes of one collective disagree on its mask");
    }
  }
  if (r == nullptr) {
    pending.emplace_back();
    r = &pending.back();
    r->op = op;
    r->mask = mask;
    r->width = width;
  }
  r->values[lane] = value;
  r->args[lane] = arg;
  r->arrived |= 1u << lane;
  self->state = ThreadState::at_warp;
  self->waiting_op = op;
  self->waiting_mask = mask;
  if (r->arrived == mask) {
    complete(b, *r, warp);
    active_thread = self;
    pending.erase(pending.begin() + (r - pending.data()));
  }
  Fiber::yield();
  return self->warp_result;
}

unsigned active_mask() {
  Block& b = block_or_die("__activemask");
  const int warp = active_thread->linear / 32;
  unsigned mask = 0;
  for (int lane = 0; lane < 32; ++lane) {
    const size_t i = static_cast<size_t>(warp * 32 + lane);
    if (i < b.threads.size() && b.threads[i].state != ThreadState::exited) mask |= 1u << lane;
  }
  return mask;
}

void* static_shared(const char* file, int line, size_t bytes, size_t alignment) {
  Block& b = block_or_die("shared memory");
  auto it = b.shared.find({file, line});
  if (it != b.shared.end()) return it->second.data;
  if (b.shared_used + bytes > b.kernel->shared_limit_bytes)
    device_fault(cudaErrorLaunchOutOfResources,
                 "shared memory declared at " + std::string(file) + ":" + std::to_string(line) + " (" +
                     std::to_string(bytes) + " bytes) takes the block to " + std::to_string(b.shared_used + bytes) +
                     " bytes, over the device limit of " + std::to_string(b.kernel->shared_limit_bytes));
  alignment = std::max<size_t>(alignment, 16);
  void* data = ::operator new(bytes, std::align_val_t(alignment));
  fill_garbage(data, bytes, *b.rng);
  b.shared.emplace(std::make_pair(file, line), SharedArray{data, alignment});
  b.shared_used += bytes;
  return data;
}

void* dynamic_shared() {
  Block& b = block_or_die("dynamic shared memory");
  if (b.dynamic.data == nullptr)
    device_fault(cudaErrorIllegalAddress, "the kernel uses dynamic shared memory but was launched with 0 bytes of it");
  return b.dynamic.data;
}

void device_fault(cudaError_t code, const std::string& what) {
  Block& b = block_or_die("a device fault");
  if (!b.fault) b.fault = {code, location(b, active_thread) + ": " + what};
  throw KernelAbort{};
}

void check_vector_access(const void* address, size_t bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(address) % bytes == 0) return;
  char text[128];
  std::snprintf(text, sizeof text, "%s at %p, which is not %zu-byte aligned", what, address, bytes);
  device_fault(cudaErrorMisalignedAddress, text);
}

std::string where_running() {
  if (active_block == nullptr) return {};
  return location(*active_block, active_thread);
}

Fault run_kernel(const KernelRun& kernel, uint64_t seed, uint64_t launch) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + launch);
  const uint64_t count = uint64_t{kernel.grid.x} * kernel.grid.y * kernel.grid.z;
  std::vector<uint64_t> order;
  const bool shuffled = seed != 0;
  if (shuffled && count <= (uint64_t{1} << 22)) {
    order.resize(count);
    for (uint64_t i = 0; i < count; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
  }
  for (uint64_t k = 0; k < count; ++k) {
    const uint64_t i = order.empty() ? k : order[k];
    const uint3 idx = {static_cast<unsigned>(i % kernel.grid.x),
                       static_cast<unsigned>(i / kernel.grid.x % kernel.grid.y),
                       static_cast<unsigned>(i / (uint64_t{kernel.grid.x} * kernel.grid.y))};
    Fault f = run_block(kernel, idx, rng, shuffled);
    if (f) return f;
  }
  return {};
}

}  // namespace qtune::sim
