#include "cuda/sim/fiber.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define QTUNE_SIM_ASAN 1
#else
#define QTUNE_SIM_ASAN 0
#endif

#if !defined(__x86_64__)
#error "the CUDA simulator's fiber switch is written for x86-64"
#endif

// qtune_sim_switch(save, next): pushes the callee-saved registers and the SSE/x87 control words,
// stores the stack pointer in *save, loads next and pops the same frame from there.
// qtune_sim_fiber_start: where a new fiber's first switch returns to; r12 holds the Fiber.
asm(R"(
  .text
  .p2align 4
  .globl qtune_sim_switch
  .type qtune_sim_switch, @function
qtune_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size qtune_sim_switch, .-qtune_sim_switch

  .p2align 4
  .globl qtune_sim_fiber_start
  .type qtune_sim_fiber_start, @function
qtune_sim_fiber_start:
  movq %r12, %rdi
  call qtune_sim_fiber_main
  ud2
  .size qtune_sim_fiber_start, .-qtune_sim_fiber_start
)");

extern "C" void qtune_sim_switch(void** save, void* next);
extern "C" void qtune_sim_fiber_start();

namespace qtune::sim {
namespace {

// Simulated kernels are small functions; sanitized frames are several times larger than plain ones.
constexpr size_t kStackBytes = size_t{256} << 10;
constexpr size_t kGuardBytes = 4096;

thread_local Fiber* running = nullptr;

void start_switch(void** fake_stack, const void* bottom, size_t size) {
#if QTUNE_SIM_ASAN
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}

void finish_switch(void* fake_stack, const void** bottom, size_t* size) {
#if QTUNE_SIM_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}

}  // namespace

void run_entry(Fiber* self);

// Runs a fiber from its first instruction to its end, then hands the CPU back for good. Not
// instrumented: until finish_switch the sanitizer still takes the scheduler's stack for the current
// one, so nothing here may touch a fake stack frame or count as a call that does not return.
__attribute__((no_sanitize("address"))) void fiber_main(Fiber* self) {
  // The sanitizer's fake stack (use-after-return detection) is kept from one start to the next: a new
  // one per simulated thread would cost a mapping and an unmapping of several megabytes each time.
  finish_switch(self->fake_stack_, &self->caller_bottom_, &self->caller_size_);
  run_entry(self);
  running = nullptr;
  start_switch(&self->fake_stack_, self->caller_bottom_, self->caller_size_);
  void* unused = nullptr;
  qtune_sim_switch(&unused, self->caller_sp_);
  __builtin_unreachable();
}

__attribute__((noinline)) void run_entry(Fiber* self) {
  self->entry_(self->arg_);
  self->finished_ = true;
}

Fiber::Fiber() {
  stack_bytes_ = kStackBytes + kGuardBytes;
  stack_ = mmap(nullptr, stack_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stack_ == MAP_FAILED) {
    std::fprintf(stderr, "qtune CUDA simulator: cannot map a %zu-byte fiber stack\n", stack_bytes_);
    std::abort();
  }
  // A thread that overflows its stack faults on the guard page instead of corrupting its neighbour.
  mprotect(stack_, kGuardBytes, PROT_NONE);
}

Fiber::~Fiber() {
#if QTUNE_SIM_ASAN
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(stack_) + kGuardBytes, kStackBytes);
#endif
  munmap(stack_, stack_bytes_);
}

void Fiber::start(Entry entry, void* arg) {
  char* const base = static_cast<char*>(stack_) + kGuardBytes;
#if QTUNE_SIM_ASAN
  if (dirty_) ASAN_UNPOISON_MEMORY_REGION(base, kStackBytes);
#endif
  entry_ = entry;
  arg_ = arg;
  finished_ = false;
  dirty_ = false;
  // The frame qtune_sim_switch pops: control words, r15..r12, rbx, rbp, then the return address.
  // After that ret the stack pointer is 16-byte aligned, as the call in qtune_sim_fiber_start needs.
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(base + kStackBytes) & ~uintptr_t{15});
  uint64_t* frame = top - 10;
  uint32_t mxcsr = 0;
  uint16_t fpu_control = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_control));
  frame[0] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpu_control) << 32);
  frame[1] = 0;                                 // r15
  frame[2] = 0;                                 // r14
  frame[3] = 0;                                 // r13
  frame[4] = reinterpret_cast<uint64_t>(this);  // r12
  frame[5] = 0;                                 // rbx
  frame[6] = 0;                                 // rbp
  frame[7] = reinterpret_cast<uint64_t>(&qtune_sim_fiber_start);
  frame[8] = 0;
  frame[9] = 0;
  sp_ = frame;
}

void Fiber::resume() {
  if (finished_) return;
  void* fake_stack = nullptr;
  running = this;
  start_switch(&fake_stack, static_cast<char*>(stack_) + kGuardBytes, kStackBytes);
  qtune_sim_switch(&caller_sp_, sp_);
  finish_switch(fake_stack, nullptr, nullptr);
  running = nullptr;
}

void Fiber::yield() {
  Fiber* self = running;
  running = nullptr;
  start_switch(&self->fake_stack_, self->caller_bottom_, self->caller_size_);
  qtune_sim_switch(&self->sp_, self->caller_sp_);
  finish_switch(self->fake_stack_, &self->caller_bottom_, &self->caller_size_);
  running = self;
}

void Fiber::discard() {
  if (!finished_) dirty_ = true;
  finished_ = true;
}

}  // namespace qtune::sim

extern "C" __attribute__((no_sanitize("address"))) void qtune_sim_fiber_main(qtune::sim::Fiber* self) {
  qtune::sim::fiber_main(self);
}
