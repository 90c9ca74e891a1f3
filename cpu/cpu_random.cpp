// Philox fills and dropout; element i of a tensor is computed from (seed, offset, i) alone.
#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "engine/numerics/philox.h"

namespace qtune::cpu {

void CpuBackend::fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double low, double high) {
  check_contiguous("fill_uniform", out, "out");
  dispatch_float(out.dtype(), "fill_uniform", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    T* o = ptr<T>(out);
    constexpr int digits = numerics::kUniformDigits<T>;
    parallel_for(out.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const A u = numerics::philox_uniform(seed, offset, static_cast<uint64_t>(i), digits);
        store(o + i, static_cast<A>(low) + (static_cast<A>(high) - static_cast<A>(low)) * u);
      }
    });
  });
}

void CpuBackend::fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  check_contiguous("fill_normal", out, "out");
  dispatch_float(out.dtype(), "fill_normal", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    T* o = ptr<T>(out);
    parallel_for(out.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const A z = numerics::philox_normal(seed, offset, static_cast<uint64_t>(i));
        store(o + i, static_cast<A>(mean) + static_cast<A>(std) * z);
      }
    });
  });
}

void CpuBackend::dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, const Tensor& y) {
  check_contiguous("dropout", x, "x");
  check_contiguous("dropout", y, "y");
  QTUNE_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* in = ptr<T>(x);
    T* o = ptr<T>(y);
    const A scale = static_cast<A>(1.0 / (1.0 - p));
    parallel_for(x.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const bool keep = numerics::philox_uniform(seed, offset, static_cast<uint64_t>(i)) >= p;
        store(o + i, keep ? load(in + i) * scale : A(0));
      }
    });
  });
}

}  // namespace qtune::cpu
