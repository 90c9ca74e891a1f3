#include "ops/attention.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  QTUNE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "scaled_dot_product_attention: q, k, v must be [B, T, H, D], got ", shape_str(q.shape()), ", ",
              shape_str(k.shape()), ", ", shape_str(v.shape()));
  QTUNE_CHECK(k.shape() == v.shape(), "scaled_dot_product_attention: k ", shape_str(k.shape()), " and v ",
              shape_str(v.shape()), " must have the same shape");
  QTUNE_CHECK(q.size(0) == k.size(0), "scaled_dot_product_attention: batch sizes differ (q ", q.size(0), ", k ",
              k.size(0), ")");
  QTUNE_CHECK(q.size(3) == k.size(3), "scaled_dot_product_attention: head dims differ (q ", q.size(3), ", k/v ",
              k.size(3), ")");
  QTUNE_CHECK(k.size(2) > 0 && q.size(2) % k.size(2) == 0, "scaled_dot_product_attention: query heads (", q.size(2),
              ") must be a multiple of kv heads (", k.size(2), ")");
  QTUNE_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), "scaled_dot_product_attention: dtypes differ (q ",
              dtype_name(q.dtype()), ", k ", dtype_name(k.dtype()), ", v ", dtype_name(v.dtype()), ")");
  QTUNE_CHECK(q.device() == k.device() && q.device() == v.device(),
              "scaled_dot_product_attention: q, k and v must be on one device");
  const double s = scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  const DType stat = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({q.size(0), q.size(2), q.size(1)}, stat, q.device());  // [B, Hq, Tq]
  Backend& backend = backend_for(q.device());
  if (out.numel() > 0) backend.attention(qc, kc, vc, s, causal, out, lse);
  if (autograd::needs_grad({q, k, v}))
    autograd::record(
        "scaled_dot_product_attention", {q, k, v}, {out},
        [qc, kc, vc, out = out.detach(), lse, s, causal](const std::vector<Tensor>& g) {
          Tensor gq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
          Tensor gk = Tensor::empty(kc.shape(), kc.dtype(), kc.device());
          Tensor gv = Tensor::empty(vc.shape(), vc.dtype(), vc.device());
          if (out.numel() == 0) {
            gk.fill_(0.0);
            gv.fill_(0.0);
          } else {
            backend_for(qc.device()).attention_backward(g[0].contiguous(), qc, kc, vc, out, lse, s, causal, gq, gk, gv);
          }
          return std::vector<Tensor>{gq, gk, gv};
        });
  return out;
}

}  // namespace qtune::ops
