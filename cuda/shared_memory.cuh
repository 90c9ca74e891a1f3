#pragma once
// Shared-memory declarations in a form both flavors understand. QTUNE_SHARED(T, name, N) declares a
// static __shared__ T name[N]; QTUNE_DYNAMIC_SHARED(T, name) names the launch's dynamic shared memory
// as a T*, 128-byte aligned (WMMA tiles need 32). The simulator gives every block its own garbage-filled copy, counted
// against the device's shared-memory limit, which a plain `__shared__` in host C++ could not do.
#if defined(QTUNE_CUDA_SIM)
#include "cuda/sim/thread_api.h"
#define QTUNE_SHARED(T, name, count) \
  T(&name)                           \
  [count] = *static_cast<T(*)[count]>(::qtune::sim::static_shared(__FILE__, __LINE__, sizeof(T) * (count), alignof(T)))
#define QTUNE_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::qtune::sim::dynamic_shared())
#else
#define QTUNE_SHARED(T, name, count) __shared__ T name[count]
#define QTUNE_DYNAMIC_SHARED(T, name)                                     \
  extern __shared__ __align__(128) unsigned char qtune_dynamic_shared_[]; \
  T* const name = reinterpret_cast<T*>(qtune_dynamic_shared_)
#endif
