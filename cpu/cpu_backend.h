#pragma once
// The CPU backend: every kernel of engine/backend.h. Each kernel family lives in its own
// cpu_<family>.cpp beside this header.
#include "engine/backend.h"

namespace qtune::cpu {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu(); }
  std::string_view name() const override { return "cpu"; }
  Allocator& allocator() override { return allocator_for(Device::cpu()); }

  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* dst) override;
  void fill(const Tensor& dst, double value) override;

  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void affine(const Tensor& x, double alpha, double beta, const Tensor& out) override;
  void pow_scalar(const Tensor& x, double exponent, const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override;

  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
            double beta) override;
  std::string gemm_path(DType dtype) override;
  bool gemm_native(DType dtype) override;

  void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) override;
  void embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_weight) override;
  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, const Tensor& grad_gate,
                       const Tensor& grad_up) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                        const Tensor& grad_x, const Tensor& grad_weight) override;
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& y) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal, const Tensor& out,
                 const Tensor& lse) override;
  void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          const Tensor& lse, double scale, bool causal, const Tensor& grad_q, const Tensor& grad_k,
                          const Tensor& grad_v) override;
  void softmax(const Tensor& x, const Tensor& y) override;
  void softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) override;
  void log_softmax(const Tensor& x, const Tensor& y) override;
  void log_softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) override;
  void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& loss,
                     const Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& lse,
                              const Tensor& grad_loss, const Tensor& grad_logits) override;

  void adamw_step_master(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& exp_avg,
                         const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int64_t step) override;
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int64_t step) override;
  void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step) override;
  void squared_norm(const Tensor& x, const Tensor& out) override;
  void squared_norm_blocks(const Tensor& x, const Tensor& out) override;
  void clip_by_norm(const Tensor& squares, double max_norm, const Tensor& grad) override;

  // Float8
  void fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale) override;
  void fp8_quantize(const Tensor& x, const Tensor& scale, const Tensor& codes) override;
  void fp8_gemm(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                const Tensor& out) override;

  void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double low, double high) override;
  void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) override;
  void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, const Tensor& y) override;

  // QAT
  void fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                     const Tensor& mask) override;
  void fake_quantize_backward(const Tensor& grad_out, const Tensor& mask, const Tensor& grad_x) override;
  void quantize_per_token(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                          const Tensor& scale, const Tensor& zero_point) override;
  void int8_int4_linear(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp, const Tensor& w_packed,
                        const Tensor& w_scale, const Tensor& out) override;
  // NF4
  void nf4_quantize(const Tensor& w, const Tensor& codes, const Tensor& scalers, const Tensor& factors,
                    const Tensor& mean) override;
  void nf4_encode(const Tensor& w, const Tensor& codes, const Tensor& absmax) override;
  void nf4_double_quantize(const Tensor& absmax, const Tensor& mean, const Tensor& scalers,
                           const Tensor& factors) override;
  void nf4_dequantize(const Tensor& codes, const Tensor& scalers, const Tensor& factors, const Tensor& mean,
                      int64_t first, const Tensor& out) override;
};

}  // namespace qtune::cpu
