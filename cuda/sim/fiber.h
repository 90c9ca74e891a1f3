#pragma once
// Cooperative fibers for simulated CUDA threads: each thread of a block runs on its own small stack
// and gives the CPU back only at a barrier or a warp collective, where the block scheduler picks the
// next one. The switch is a few instructions of x86-64 assembly (no signal-mask system call, and no
// ASan interceptor clearing a whole stack's shadow on every switch, as swapcontext has), with the
// AddressSanitizer fiber annotations so that sanitized builds know which stack is live.
#include <cstddef>
#include <vector>

namespace qtune::sim {

class Fiber {
 public:
  using Entry = void (*)(void* arg);

  Fiber();
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run entry(arg) from the start of its stack at the next resume().
  void start(Entry entry, void* arg);
  // Runs the fiber until it yields or finishes; called by the scheduler only.
  void resume();
  bool finished() const { return finished_; }
  // Gives up a fiber suspended mid-call (its block faulted): it will not be resumed, and its stack is
  // cleaned before the next start().
  void discard();

  // Called on the fiber: back to the scheduler until resumed.
  static void yield();

 private:
  friend void fiber_main(Fiber* self);
  friend void run_entry(Fiber* self);
  void* stack_ = nullptr;  // the mapping, guard page first
  size_t stack_bytes_ = 0;
  void* sp_ = nullptr;         // the fiber's saved stack pointer while it is not running
  void* caller_sp_ = nullptr;  // the scheduler's, while the fiber runs
  Entry entry_ = nullptr;
  void* arg_ = nullptr;
  bool finished_ = true;
  bool dirty_ = false;  // abandoned mid-call: its stack's sanitizer shadow must be cleared before reuse
  void* fake_stack_ = nullptr;
  const void* caller_bottom_ = nullptr;
  size_t caller_size_ = 0;
};

}  // namespace qtune::sim
