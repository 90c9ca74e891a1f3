#pragma once
// The CUDA backend of one device: every Backend kernel. All work of a device is queued on one stream,
// so kernels need no events between them and the caching allocator may reuse a freed block at once.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "cuda/caching_allocator.h"
#include "cuda/pinned_staging.h"
#include "engine/backend.h"

namespace qtune::gpu {

class LtGemm;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda(index_); }
  std::string_view name() const override { return name_; }
  Allocator& allocator() override { return allocator_; }
  void synchronize() override;

  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* dst) override;
  void fill(const Tensor& dst, double value) override;

  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void affine(const Tensor& x, double alpha, double beta, const Tensor& out) override;
  void pow_scalar(const Tensor& x, double exponent, const Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, const Tensor& out) override;

  void set_tf32(bool enabled) override { tf32_ = enabled; }
  bool tf32() const override { return tf32_; }
  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
            double beta) override;

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

  // Rows over the last dim (cuda_softmax.cu)
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
  void clip_by_norm(const Tensor& squares, double max_norm, const Tensor& grad) override;

  // Float8
  void fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale) override;
  void fp8_quantize(const Tensor& x, const Tensor& scale, const Tensor& codes) override;
  // cuBLASLt's fp8 GEMM: tensorwise scales as scalars, per-row scales as outer vectors (Hopper on); what
  // cuBLASLt refuses is dequantized and multiplied in f32.
  void fp8_gemm(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                const Tensor& out) override;

  void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double low, double high) override;
  void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) override;
  void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, const Tensor& y) override;

  // QAT (cuda_fake_quant.cu)
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
  void nf4_dequantize(const Tensor& codes, const Tensor& scalers, const Tensor& factors, const Tensor& mean,
                      int64_t first, const Tensor& out) override;

#if defined(QTUNE_HAVE_NCCL)
  // NCCL (cuda/nccl_collectives.cpp)
  std::string new_collectives_id() override;
  std::unique_ptr<DeviceCollectives> join_collectives(const std::string& id, int rank, int size) override;
#endif

  cudaStream_t stream() const { return stream_; }
  // Makes this device current for the calling thread; every entry point calls it first.
  void activate() const;

 private:
  template <bool Log>
  void softmax_rows(const char* kernel, const Tensor& x, const Tensor& y);
  template <bool Log>
  void softmax_rows_backward(const char* kernel, const Tensor& y, const Tensor& grad_y, const Tensor& grad_x);

  int index_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  CachingAllocator allocator_;
  PinnedStaging staging_;  // host-to-device copies that return without waiting
  std::unique_ptr<LtGemm> gemm_;
  bool tf32_ = false;
};

}  // namespace qtune::gpu
