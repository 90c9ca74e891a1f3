// The 8da4w GEMM: int8 activation codes times packed int4 weights, int32 sums within each weight group,
// scaled per group and per token in f32. Portable C++ (the compiler vectorizes the int8 dot).
#include <algorithm>
#include <vector>

#include "engine/numerics/intx_quant.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

// q, w: [n] int8 -> sum of products, exact in int32 for n <= 2^16 (|q * w| <= 128 * 8).
int32_t dot_i8(const int8_t* q, const int8_t* w, int64_t n) {
  int32_t acc = 0;
  for (int64_t k = 0; k < n; ++k) acc += static_cast<int32_t>(q[k]) * static_cast<int32_t>(w[k]);
  return acc;
}

}  // namespace

void CpuBackend::int8_int4_linear(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp,
                                  const Tensor& w_packed, const Tensor& w_scale, const Tensor& out) {
  const int64_t group = check_int8_int4_linear_args(codes, x_scale, x_zp, w_packed, w_scale, out);
  const int64_t n_tokens = codes.size(0), k_in = codes.size(1), m_out = w_packed.size(0), groups = k_in / group;
  const int8_t* q = ptr<int8_t>(codes);
  const float* xs = ptr<float>(x_scale);
  const int32_t* xz = ptr<int32_t>(x_zp);
  const uint8_t* wp = ptr<uint8_t>(w_packed);
  const float* ws = ptr<float>(w_scale);
  float* y = ptr<float>(out);
  parallel_for(m_out, std::max<int64_t>(1, 65536 / std::max<int64_t>(k_in * n_tokens, 1)), [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> w(static_cast<size_t>(k_in));
    std::vector<int32_t> w_sum(static_cast<size_t>(groups));
    for (int64_t m = m0; m < m1; ++m) {
      // Unpack the row once for every token; sum(q - zp) * w = sum(q * w) - zp * sum(w).
      for (int64_t k = 0; k < k_in / 2; ++k) {
        const uint8_t b = wp[m * (k_in / 2) + k];
        w[2 * k] = static_cast<int8_t>(numerics::low_nibble(b) - 8);
        w[2 * k + 1] = static_cast<int8_t>(numerics::high_nibble(b) - 8);
      }
      for (int64_t g = 0; g < groups; ++g) {
        int32_t s = 0;
        for (int64_t k = 0; k < group; ++k) s += w[g * group + k];
        w_sum[g] = s;
      }
      const float* row_scale = ws + m * groups;
      for (int64_t n = 0; n < n_tokens; ++n) {
        const int8_t* qn = q + n * k_in;
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          const int32_t dot = dot_i8(qn + g * group, w.data() + g * group, group) - xz[n] * w_sum[g];
          acc += static_cast<float>(dot) * row_scale[g];
        }
        y[n * m_out + m] = acc * xs[n];
      }
    }
  });
}

}  // namespace qtune::cpu
