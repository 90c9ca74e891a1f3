// Compiled with -fno-trapping-math (see fake_quant_loops.h).
#include "cpu/fake_quant_loops.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

// The min and max of x[0..n), kept per lane so the scan vectorizes. For finite values these are the
// reference's extremes (group_extremes) up to the sign of a zero, which the qparams formulas clamp or add away.
template <class T>
std::pair<float, float> group_min_max(const T* x, int64_t n) {
  constexpr int64_t kLanes = 16;
  float lo[kLanes], hi[kLanes];
  const float first = load(x);
  std::fill(lo, lo + kLanes, first);
  std::fill(hi, hi + kLanes, first);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const float v = load(x + i + j);
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
    }
  for (int64_t j = 0; i < n; ++i, ++j) {
    const float v = load(x + i);
    lo[j] = v < lo[j] ? v : lo[j];
    hi[j] = v > hi[j] ? v : hi[j];
  }
  float min_v = first, max_v = first;
  for (int64_t j = 0; j < kLanes; ++j) {
    min_v = lo[j] < min_v ? lo[j] : min_v;
    max_v = hi[j] > max_v ? hi[j] : max_v;
  }
  return {min_v, max_v};
}

}  // namespace

// numerics::round_half_even avoids depending on the rounding mode with a floor and an fmod branch, which
// keeps a loop scalar (5 ns per weight, the bulk of a QAT step on CPU). std::nearbyint under round-to-nearest
// rounds half to even identically and becomes one vector instruction. Everything else is the reference's
// arithmetic, operation for operation; tests/test_fake_quant.cpp compares the two bit for bit (finite
// inputs; a NaN may land in another lane's extremes).
template <class T>
bool fake_quantize_group_vectorized(const T* x, int64_t n, const numerics::FakeQuantSpec& spec, T* out, uint8_t* mask) {
  switch (spec.kind) {
    case numerics::FakeQuantKind::intx_symmetric:
    case numerics::FakeQuantKind::intx_asymmetric: {
      const auto [min_v, max_v] = group_min_max(x, n);
      const auto p = numerics::intx_qparams<T>(min_v, max_v, spec);
      const float inv = 1.0f / p.scale, zp = float(p.zero_point), lo = float(spec.qmin), hi = float(spec.qmax);
      for (int64_t i = 0; i < n; ++i) {
        const float q = std::nearbyint(load(x + i) * inv) + zp;
        mask[i] = q >= lo && q <= hi;
        const float code = q < lo ? lo : (q > hi ? hi : q);
        store(out + i, (code - zp) * p.scale);
      }
      return true;
    }
    case numerics::FakeQuantKind::int4_weight_only: {
      const auto [min_v, max_v] = group_min_max(x, n);
      const auto p = numerics::int4wo_params(min_v, max_v);
      for (int64_t i = 0; i < n; ++i) {
        const float q = std::nearbyint((load(x + i) - p.min) / p.scale);
        mask[i] = q >= 0.0f && q <= 15.0f;
        const float code = q < 0.0f ? 0.0f : (q > 15.0f ? 15.0f : q);
        store(out + i, (code - 8.0f) * p.scale + p.zero);
      }
      return true;
    }
    default:
      return false;
  }
}

template bool fake_quantize_group_vectorized<float>(const float*, int64_t, const numerics::FakeQuantSpec&, float*,
                                                    uint8_t*);
template bool fake_quantize_group_vectorized<bf16_t>(const bf16_t*, int64_t, const numerics::FakeQuantSpec&, bf16_t*,
                                                     uint8_t*);
template bool fake_quantize_group_vectorized<f16_t>(const f16_t*, int64_t, const numerics::FakeQuantSpec&, f16_t*,
                                                    uint8_t*);

}  // namespace qtune::cpu
