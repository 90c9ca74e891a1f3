// HF rotate-half RoPE: within each head, element i pairs with i + D/2 and the pair is rotated by the
// angle of (position, i). The tables already hold cos/sin, so the kernel is a streaming pass.
#include <algorithm>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {

void CpuBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& y) {
  check_rope_args(x, cos, sin, y);
  const int64_t batch = x.size(0), seq = x.size(1), heads = x.size(2), dim = x.size(3), half = dim / 2;
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* px = ptr<T>(x);
    T* py = ptr<T>(y);
    const A* pc = ptr<A>(cos);
    const A* ps = ptr<A>(sin);
    // The inverse rotation is the same rotation by -angle.
    const A sign = inverse ? A(-1) : A(1);
    const int64_t rows = batch * seq;  // one (b, t) row holds H heads of D
    parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(heads * dim, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = r % seq;
        const A* cr = pc + t * half;
        const A* sr = ps + t * half;
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t base = (r * heads + h) * dim;
          const T* xh = px + base;
          T* yh = py + base;
          for (int64_t i = 0; i < half; ++i) {
            // Both inputs are read before either output is written, so y may alias x.
            const A x1 = load(xh + i), x2 = load(xh + i + half);
            const A c = cr[i], s = sign * sr[i];
            store(yh + i, x1 * c - x2 * s);
            store(yh + i + half, x2 * c + x1 * s);
          }
        }
      }
    });
  });
}

}  // namespace qtune::cpu
