// Optimizer updates (AdamW, SGD) over the scalar numerics of engine/numerics/adamw.h, and the sum of
// squares that gradient clipping needs. OpenMP over elements; each element is independent.
#include <algorithm>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/row_sum.h"
#include "engine/numerics/adamw.h"
#include "engine/numerics/clip.h"

namespace qtune::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;

// The AdamW pass of adamw_step (master null: p is updated in f32 and rounded back) and adamw_step_master (the
// f32 master is updated and rounded into p). The f32 arrays never overlap each other or p (the optimizer's own
// buffers); said with __restrict, the loops vectorize without run-time overlap checks (BM_adamw_step_master:
// 57 -> 100 GB/s).
template <class T>
void adamw_pass(T* p, const T* g, float* master, float* exp_avg, float* exp_avg_sq, int64_t n,
                const numerics::AdamWScalars& s) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    const numerics::AdamWScalars sc = s;  // a local copy, as in sgd_step
    float* __restrict m = exp_avg;
    float* __restrict v = exp_avg_sq;
    if (master == nullptr) {
      for (int64_t i = b; i < e; ++i) {
        float pi = static_cast<float>(load(p + i));
        numerics::adamw_update(pi, static_cast<float>(load(g + i)), m[i], v[i], sc);
        store(p + i, pi);
      }
      return;
    }
    float* __restrict w = master;
    for (int64_t i = b; i < e; ++i) {
      numerics::adamw_update(w[i], static_cast<float>(load(g + i)), m[i], v[i], sc);
      store(p + i, w[i]);
    }
  });
}

}  // namespace

void CpuBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  check_update_args("adamw_step", param, grad, {&exp_avg, &exp_avg_sq});
  QTUNE_CHECK(exp_avg.defined() && exp_avg_sq.defined(), "adamw_step: exp_avg and exp_avg_sq are required");
  const numerics::AdamWScalars s = numerics::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  dispatch_float(param.dtype(), "adamw_step", [&](auto tag) {
    using T = decltype(tag);
    adamw_pass(ptr<T>(param), ptr<T>(grad), nullptr, ptr<float>(exp_avg), ptr<float>(exp_avg_sq), param.numel(), s);
  });
}

// One pass: 14 bytes read and 14 written per element, where widening, updating and rounding apart move 40.
void CpuBackend::adamw_step_master(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& exp_avg,
                                   const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps,
                                   double weight_decay, int64_t step) {
  check_master_update_args(param, master, grad, exp_avg, exp_avg_sq);
  const numerics::AdamWScalars s = numerics::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  dispatch_float(param.dtype(), "adamw_step_master", [&](auto tag) {
    using T = decltype(tag);
    adamw_pass(ptr<T>(param), ptr<T>(grad), ptr<float>(master), ptr<float>(exp_avg), ptr<float>(exp_avg_sq),
               param.numel(), s);
  });
}

void CpuBackend::sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr,
                          double momentum, double dampening, bool nesterov, double weight_decay, bool first_step) {
  check_update_args("sgd_step", param, grad, {&momentum_buffer});
  const numerics::SGDScalars s = numerics::sgd_scalars(lr, momentum, dampening, nesterov, weight_decay, first_step);
  QTUNE_CHECK(momentum_buffer.defined() == s.has_momentum, "sgd_step: a momentum buffer is needed exactly when ",
              "momentum != 0 (momentum ", momentum, ")");
  float* buf = s.has_momentum ? ptr<float>(momentum_buffer) : nullptr;
  dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(param);
    const T* g = ptr<T>(grad);
    parallel_for(param.numel(), kGrain, [&](int64_t b, int64_t e) {
      // A local copy: read through the captured reference, the scalars might alias the buffers, and
      // the loop ran its scalar fallback (half the speed, measured).
      const numerics::SGDScalars sc = s;
      auto update = [&](int64_t i, float& buffer) {
        float pi = static_cast<float>(load(p + i));
        numerics::sgd_update(pi, static_cast<float>(load(g + i)), buffer, sc);
        store(p + i, pi);
      };
      // Separate loops so that each indexes its memory plainly (the compiler vectorizes neither a
      // conditional reference nor a null test per element).
      if (buf != nullptr) {
        for (int64_t i = b; i < e; ++i) update(i, buf[i]);
      } else {
        for (int64_t i = b; i < e; ++i) {
          float unused = 0.0f;
          update(i, unused);
        }
      }
    });
  });
}

void CpuBackend::squared_norm_blocks(const Tensor& x, const Tensor& out) {
  check_contiguous("squared_norm_blocks", x, "x");
  const int64_t n = x.numel();
  const int64_t blocks = (n + numerics::kSquaredNormBlock - 1) / numerics::kSquaredNormBlock;
  QTUNE_CHECK(out.dtype() == DType::f64 && out.numel() == blocks && out.is_contiguous(),
              "squared_norm_blocks: out must be ", blocks, " f64 elements for ", n, " elements of x, got ",
              dtype_name(out.dtype()), " ", shape_str(out.shape()));
  double* partial = ptr<double>(out);
  dispatch_float(x.dtype(), "squared_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* in = ptr<T>(x);
    parallel_for(blocks, 2, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t begin = k * numerics::kSquaredNormBlock;
        const T* block = in + begin;
        partial[k] = row_sum<A>(std::min(numerics::kSquaredNormBlock, n - begin), [block](int64_t i) {
          const A v = load(block + i);
          return v * v;
        });
      }
    });
  });
}

void CpuBackend::squared_norm(const Tensor& x, const Tensor& out) {
  check_contiguous("squared_norm", x, "x");
  QTUNE_CHECK(out.dtype() == DType::f64 && out.numel() == 1 && out.is_contiguous(),
              "squared_norm: out must be one f64 element, got ", dtype_name(out.dtype()), " ", shape_str(out.shape()));
  const int64_t blocks = (x.numel() + numerics::kSquaredNormBlock - 1) / numerics::kSquaredNormBlock;
  const Tensor partial = Tensor::empty({blocks}, DType::f64);
  squared_norm_blocks(x, partial);
  double total = 0.0;
  for (int64_t k = 0; k < blocks; ++k) total += ptr<double>(partial)[k];
  *ptr<double>(out) = total;
}

void CpuBackend::clip_by_norm(const Tensor& squares, double max_norm, const Tensor& grad) {
  check_clip_by_norm_args(squares, grad);
  const double norm = numerics::norm_from_squares(ptr<double>(squares), squares.numel());
  if (!numerics::clip_applies(norm, max_norm)) return;
  affine(grad, numerics::clip_coefficient(norm, max_norm), 0.0, grad);
}

}  // namespace qtune::cpu
