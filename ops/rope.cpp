#include "ops/rope.h"

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/numerics/rope.h"

namespace qtune::ops {
namespace {

void check_rope_args(int64_t head_dim, double theta, const RopeScaling& scaling, DType dtype) {
  QTUNE_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head_dim must be positive and even, got ", head_dim);
  QTUNE_CHECK(theta > 0.0, "rope: theta must be positive, got ", theta);
  QTUNE_CHECK(dtype == DType::f32 || dtype == DType::f64, "rope: tables are f32 or f64, not ", dtype_name(dtype));
  if (scaling.type == RopeScaling::Type::llama3)
    QTUNE_CHECK(scaling.factor > 0.0 && scaling.low_freq_factor > 0.0 &&
                    scaling.high_freq_factor > scaling.low_freq_factor && scaling.original_max_position_embeddings > 0,
                "rope: invalid llama3 rope_scaling (factor ", scaling.factor, ", low_freq_factor ",
                scaling.low_freq_factor, ", high_freq_factor ", scaling.high_freq_factor,
                ", original_max_position_embeddings ", scaling.original_max_position_embeddings, ")");
}

template <class F>
std::vector<F> inv_freq_values(int64_t head_dim, double theta, const RopeScaling& scaling) {
  std::vector<F> out(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    F f = numerics::rope_default_inv_freq<F>(i, head_dim, theta);
    if (scaling.type == RopeScaling::Type::llama3)
      f = numerics::rope_llama3_inv_freq<F>(f, scaling.factor, scaling.low_freq_factor, scaling.high_freq_factor,
                                            static_cast<double>(scaling.original_max_position_embeddings));
    out[static_cast<size_t>(i)] = f;
  }
  return out;
}

template <class F>
std::pair<Tensor, Tensor> tables(const std::vector<int64_t>& positions, int64_t head_dim, double theta,
                                 const RopeScaling& scaling, Device device) {
  const std::vector<F> inv = inv_freq_values<F>(head_dim, theta, scaling);
  const int64_t seq = static_cast<int64_t>(positions.size()), half = head_dim / 2;
  std::vector<F> c(static_cast<size_t>(seq * half)), s(c.size());
  for (int64_t t = 0; t < seq; ++t)
    for (int64_t i = 0; i < half; ++i) {
      // HF: freqs = inv_freq @ position_ids.float(), one rounding in F.
      const F angle = static_cast<F>(positions[static_cast<size_t>(t)]) * inv[static_cast<size_t>(i)];
      c[static_cast<size_t>(t * half + i)] = std::cos(angle);
      s[static_cast<size_t>(t * half + i)] = std::sin(angle);
    }
  return {Tensor::from_vector(c, {seq, half}, device), Tensor::from_vector(s, {seq, half}, device)};
}

}  // namespace

Tensor rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling, DType dtype) {
  check_rope_args(head_dim, theta, scaling, dtype);
  if (dtype == DType::f64)
    return Tensor::from_vector(inv_freq_values<double>(head_dim, theta, scaling), {head_dim / 2});
  return Tensor::from_vector(inv_freq_values<float>(head_dim, theta, scaling), {head_dim / 2});
}

std::pair<Tensor, Tensor> rope_tables(const Tensor& positions, int64_t head_dim, double theta,
                                      const RopeScaling& scaling, DType dtype, Device device) {
  check_rope_args(head_dim, theta, scaling, dtype);
  QTUNE_CHECK(positions.dim() == 1 && (positions.dtype() == DType::i64 || positions.dtype() == DType::i32),
              "rope_tables: positions must be a 1-D i32/i64 tensor [T], got ", shape_str(positions.shape()), " ",
              dtype_name(positions.dtype()));
  const std::vector<int64_t> pos = positions.to_vector<int64_t>();
  if (dtype == DType::f64) return tables<double>(pos, head_dim, theta, scaling, device);
  return tables<float>(pos, head_dim, theta, scaling, device);
}

std::pair<Tensor, Tensor> rope_tables(int64_t start, int64_t length, int64_t head_dim, double theta,
                                      const RopeScaling& scaling, DType dtype, Device device) {
  QTUNE_CHECK(start >= 0 && length >= 0, "rope_tables: start ", start, " and length ", length, " must be non-negative");
  std::vector<int64_t> pos(static_cast<size_t>(length));
  for (int64_t t = 0; t < length; ++t) pos[static_cast<size_t>(t)] = start + t;
  check_rope_args(head_dim, theta, scaling, dtype);
  if (dtype == DType::f64) return tables<double>(pos, head_dim, theta, scaling, device);
  return tables<float>(pos, head_dim, theta, scaling, device);
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  QTUNE_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: input ", shape_str(x.shape()),
              " must be [B, T, H, D] with an even head dim");
  const Shape table_shape{x.size(1), x.size(3) / 2};
  QTUNE_CHECK(cos.shape() == table_shape && sin.shape() == table_shape, "rope: cos ", shape_str(cos.shape()),
              " and sin ", shape_str(sin.shape()), " must be [T, D/2] = ", shape_str(table_shape), " for input ",
              shape_str(x.shape()));
  const DType table_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  QTUNE_CHECK(cos.dtype() == table_dtype && sin.dtype() == table_dtype, "rope: tables must be ",
              dtype_name(table_dtype), " for ", dtype_name(x.dtype()), " input, got ", dtype_name(cos.dtype()), " and ",
              dtype_name(sin.dtype()));
  QTUNE_CHECK(x.device() == cos.device() && x.device() == sin.device(), "rope: input on ", x.device().str(),
              " but tables on ", cos.device().str(), " and ", sin.device().str());
  Tensor c = cos.detach().contiguous(), s = sin.detach().contiguous();
  if (x.dtype() == DType::bf16 || x.dtype() == DType::f16) {
    c = c.to(x.dtype()).to(table_dtype);
    s = s.to(x.dtype()).to(table_dtype);
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).rope(x.detach().contiguous(), c, s, /*inverse=*/false, y);
  if (autograd::needs_grad({x}))
    autograd::record("rope", {x}, {y}, [c, s](const std::vector<Tensor>& g) {
      // The rotation is orthogonal: its gradient is the inverse rotation.
      Tensor grad = Tensor::empty(g[0].shape(), g[0].dtype(), g[0].device());
      backend_for(grad.device()).rope(g[0].contiguous(), c, s, /*inverse=*/true, grad);
      return std::vector<Tensor>{grad};
    });
  return y;
}

}  // namespace qtune::ops
