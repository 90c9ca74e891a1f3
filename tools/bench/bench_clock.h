#pragma once
// Clocks shared by the benchmarks: wall time, and process CPU time spread over the worker threads. The
// latter stays near the uncontended rate when other processes steal time slices (a shared build
// machine), so reports print both.
#include <time.h>

#include <chrono>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace qtune::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

inline int worker_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace qtune::bench
