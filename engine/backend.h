#pragma once
// Backend: the ONE list of kernels the engine needs. CpuBackend (cpu/) implements all of it;
// CudaBackend (cuda/) overrides what it has, and any kernel it lacks throws naming the kernel.
//
// Conventions for every kernel:
//  - inputs first, outputs last; outputs are pre-allocated by the caller with the documented shape
//    (the handles are const, the memory they point to is written);
//  - all tensors live on this backend's device;
//  - unless a comment says "strided", tensors must be contiguous (the op layer makes them so);
//  - floating kernels accept f64, f32, bf16 and f16; reduced precision is computed in f32,
//    f64 in f64 (the gradient checks run in f64).
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <utility>

#include "engine/allocator.h"
#include "engine/device_collectives.h"
#include "engine/numerics/elementwise.h"  // UnaryOp, BinaryOp
#include "engine/numerics/intx_quant.h"   // FakeQuantSpec
#include "engine/tensor.h"

namespace qtune {

enum class ReduceOp : uint8_t { sum, max, min, amax /* max |x| */ };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string_view name() const = 0;
  virtual Allocator& allocator() = 0;
  // Waits for all queued work (a no-op on CPU).
  virtual void synchronize() {}

  // ---- collectives between devices (engine/device_collectives.h; NCCL on CUDA) ----------------------
  // A new group's identity (opaque bytes), made by one rank and sent to the others over another channel.
  virtual std::string new_collectives_id();
  // Joins group `id` as `rank` of `size` on this backend's device; blocks until every rank has joined.
  virtual std::unique_ptr<DeviceCollectives> join_collectives(const std::string& id, int rank, int size);

  // ---- memory ----------------------------------------------------------------------------------
  // dst = src, strided on both sides, same shape, any dtypes (casts as docs/numerics.md §3/§6; float to
  // integer truncates toward zero; to bool is != 0).
  virtual void copy(const Tensor& src, const Tensor& dst);
  // Contiguous host <-> device transfers of dst.nbytes() / src.nbytes() bytes.
  virtual void copy_from_host(const void* src, const Tensor& dst);
  virtual void copy_to_host(const Tensor& src, void* dst);
  virtual void fill(const Tensor& dst, double value);  // strided

  // ---- elementwise (strided, broadcasting through stride-0 views; out may alias an input with the
  //      same layout) -----------------------------------------------------------------------------
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out);
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
  // out = alpha * x + beta
  virtual void affine(const Tensor& x, double alpha, double beta, const Tensor& out);
  // out = x ^ exponent
  virtual void pow_scalar(const Tensor& x, double exponent, const Tensor& out);

  // x: any shape (strided); out: x's shape with every reduced dim of size 1 (contiguous).
  // Accumulates in f64 and rounds once to out's dtype; NaN propagates through max, min and amax.
  virtual void reduce(ReduceOp op, const Tensor& x, const Tensor& out);

  // ---- GEMM ----------------------------------------------------------------------------------------
  // c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] for each batch i.
  // a: [batch, m, k] ([batch, k, m] when trans_a), b: [batch, k, n] ([batch, n, k] when trans_b),
  // c: [batch, m, n]. Every operand's last dim has stride 1; row strides are free; batch strides
  // may be 0 (one matrix shared by the batch). Accumulates in f32 (f64 for f64).
  virtual void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
                    double beta);
  // Which code path a GEMM of `dtype` operands takes on this backend, in words ("oneDNN matmul
  // (brg:avx512_core_bf16)", "widened to f32 (...)"), for `qtune version` and the benchmarks.
  virtual std::string gemm_path(DType dtype);
  // Whether GEMMs of `dtype` run on the hardware's own arithmetic for it (false: a CPU that widens bf16 to
  // f32, where bf16 is slower than f32). What `qtune demo` picks its dtype by.
  virtual bool gemm_native(DType dtype);
  // Whether f32 GEMMs round their inputs to TF32 (docs/numerics.md, "TF32") on tensor cores. Off by
  // default, so f32 results match the CPU's; a backend without TF32 refuses to turn it on.
  virtual void set_tf32(bool enabled);
  virtual bool tf32() const { return false; }

  // ---- model kernels -------------------------------------------------------------------------------
  // weight: [V, C], ids: [N] (i32 or i64, each in [0, V)), out: [N, C]
  virtual void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out);
  // grad_out: [N, C]; grad_weight: [V, C] accumulated into (+=)
  virtual void embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_weight);

  // out = silu(gate) * up; all the same shape
  virtual void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out);
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, const Tensor& grad_gate,
                               const Tensor& grad_up);

  // x: [N, C], weight: [C], y: [N, C], rstd: [N] f32 (f64 for f64 x). y = x * rstd * weight, in f32.
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd);
  // grad_x: [N, C]; grad_weight: [C] (written, not accumulated)
  virtual void rmsnorm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                const Tensor& grad_x, const Tensor& grad_weight);

  // HF rotate-half RoPE. x, y: [B, T, H, D]; cos, sin: [T, D/2] f32 (f64 for f64 x), the angles of
  // each position. inverse=true applies the transpose rotation (the backward).
  virtual void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& y);

  // Scaled dot-product attention with grouped-query heads.
  // q: [B, Tq, Hq, D], k, v: [B, Tk, Hkv, D] with Hq % Hkv == 0 (query head h reads KV head
  // h / (Hq / Hkv)); out: [B, Tq, Hq, D]; lse: [B, Hq, Tq] f32 (f64 for f64), the log-sum-exp of
  // each query's scaled scores. causal: query i (0-based) sees keys j <= i + (Tk - Tq), so a KV
  // cache of earlier positions works. Tiled: never materializes a [Tq, Tk] matrix per head.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                         const Tensor& out, const Tensor& lse);
  virtual void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, double scale, bool causal, const Tensor& grad_q,
                                  const Tensor& grad_k, const Tensor& grad_v);

  // Over the last dim. x, y: [N, C]
  virtual void softmax(const Tensor& x, const Tensor& y);
  virtual void softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x);
  virtual void log_softmax(const Tensor& x, const Tensor& y);
  virtual void log_softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x);

  // logits: [N, V]; targets: [N] i64 (ignore_index rows give loss 0); loss, lse: [N] f32 (f64 for f64)
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& loss,
                             const Tensor& lse);
  // grad_logits[i] = grad_loss[i] * (softmax(logits[i]) - onehot(targets[i])); zero for ignored rows.
  // grad_loss: [N] f32 (f64 for f64)
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                      const Tensor& lse, const Tensor& grad_loss, const Tensor& grad_logits);

  // ---- optimizer updates (engine/numerics/adamw.h), in place, one pass over memory ---------------------
  // param: f32, bf16 or f16, updated in f32 and rounded back once (read and written); grad: param's
  // dtype and shape; state tensors: f32, param's shape (read and written).
  // step: this parameter's update count, 1 on its first update (the bias corrections use it).
  virtual void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                          double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step);
  // Mixed precision's update (docs/numerics.md, "Mixed precision"): master (f32, param's shape) takes
  // adamw_step's update from grad (param's dtype) widened to f32, then param (bf16 or f16) = master rounded
  // once. master, exp_avg and exp_avg_sq are three separate buffers. This default runs those three steps; a
  // backend may fuse them into one pass (the CPU and CUDA do), with the same bits.
  virtual void adamw_step_master(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& exp_avg,
                                 const Tensor& exp_avg_sq, double lr, double beta1, double beta2, double eps,
                                 double weight_decay, int64_t step);
  // momentum_buffer: undefined when momentum is 0; first_step sets it to the (decayed) gradient.
  virtual void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr,
                        double momentum, double dampening, bool nesterov, double weight_decay, bool first_step);
  // out: [1] f64 = sum of x^2 over all of x (any floating dtype). Squares are summed in f32 (f64 for
  // f64) within fixed blocks of elements and the block sums in f64 in order, so the result depends on
  // the size alone, never on the thread count: gradient clipping stays reproducible.
  virtual void squared_norm(const Tensor& x, const Tensor& out);
  // out: [ceil(numel / numerics::kSquaredNormBlock)] f64, the block sums squared_norm adds up in order
  // (block k covers elements [k B, (k + 1) B) of x). The default runs squared_norm on each block.
  virtual void squared_norm_blocks(const Tensor& x, const Tensor& out);
  // Global-norm clipping of one gradient (engine/numerics/clip.h): squares: [k] f64, every gradient's
  // squared_norm; grad (any floating dtype, contiguous) *= the clip coefficient of their norm, in place, when
  // numerics::clip_applies. Reads `squares` on the device, so nothing waits for the norm.
  virtual void clip_by_norm(const Tensor& squares, double max_norm, const Tensor& grad);

  // ---- float8 (docs/numerics.md §3) ---------------------------------------------------------------- // Float8
  // x: [R, C] floating; scale: f32 [R, 1] (one per row), [1, C] (one per column) or [1, 1] (one per
  // tensor), each numerics::fp8_scale_of(max |x| over its group, fp8_max, pow2).
  virtual void fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale);
  // x: [R, C] floating; scale: as fp8_scale's; codes: [R, C] f8_e4m3 or f8_e5m2 = fp8(x * scale), the
  // product in f32 (f64 for f64 x), saturated to the format's max.
  virtual void fp8_quantize(const Tensor& x, const Tensor& scale, const Tensor& codes);
  // The fp8 GEMM: out = (a / a_scale) @ (b / b_scale)^T with f32 accumulation, rounded once to out's dtype.
  // a: [M, K] and b: [N, K] fp8 codes (e4m3 or e5m2, not both e5m2), K-major (contiguous), as fp8 tensor
  // cores take them; a_scale: f32 [1, 1] or [M, 1], b_scale: f32 [1, 1] or [N, 1] (fp8_scale's multipliers:
  // code = x * scale); out: [M, N] f32, bf16 or f16 (contiguous).
  virtual void fp8_gemm(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                        const Tensor& out);

  // ---- randomness (Philox, engine/numerics/philox.h) -------------------------------------------------
  virtual void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double low, double high);
  virtual void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
  // y = x * keep / (1 - p), keep_i = philox_uniform(seed, offset, i) >= p. The same call on the
  // gradient is the backward.
  virtual void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, const Tensor& y);

  // ---- QAT: integer fake quantization (engine/numerics/intx_quant.h, docs/numerics.md §2) -------------------
  // x, out: [N, C] (f64, f32, bf16 or f16; out like x), quantized in groups of spec.group_size along C (0:
  // all of C, per token); the group size must divide C. mask: [N, C] u8, 1 where the straight-through
  // gradient passes (the code was not clamped). out may alias x.
  virtual void fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                             const Tensor& mask);
  // grad_x = mask ? grad_out : 0. grad_out, grad_x: [N, C] of one floating dtype; mask: [N, C] u8.
  virtual void fake_quantize_backward(const Tensor& grad_out, const Tensor& mask, const Tensor& grad_x);
  // Real (not fake) per-token quantization with an intx spec whose codes fit int8 (8da4w activations):
  // x: [N, K] floating; codes: [N, K] i8; scale: [N] f32; zero_point: [N] i32. Same qparams and codes as
  // fake_quantize with group_size 0.
  virtual void quantize_per_token(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                                  const Tensor& scale, const Tensor& zero_point);
  // The 8da4w GEMM, int8 x int4 products accumulated in int32 within each weight group:
  // out[n, m] = x_scale[n] * sum_g w_scale[m, g] * sum_{k in g} (codes[n, k] - x_zp[n]) * w[m, k].
  // codes: [N, K] i8; x_scale: [N] f32; x_zp: [N] i32; w_packed: [M, K/2] u8 (signed int4 code + 8, element
  // 2i in the low nibble, numerics::pack_nibbles); w_scale: [M, K/G] f32; out: [N, M] f32.
  virtual void int8_int4_linear(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp, const Tensor& w_packed,
                                const Tensor& w_scale, const Tensor& out);
  // ---- NF4 (docs/numerics.md §1, engine/numerics/nf4.h) ---------------------------------------------------
  // A weight of n elements has nb = ceil(n / 64) blocks (the last one padded with zeros) and
  // ns = ceil(nb / 256) scaler blocks. codes: [nb * 32] u8, scalers: [nb] i8, factors: [ns] and mean: [1]
  // in the weight's dtype. The mean and each factor cover the real blocks only.
  // w: [n] f32 or bf16
  virtual void nf4_quantize(const Tensor& w, const Tensor& codes, const Tensor& scalers, const Tensor& factors,
                            const Tensor& mean);
  // nf4_quantize in two halves, for a weight quantized in pieces of whole scaler blocks (a sharded load): nf4_encode
  // gives the codes and each block's absmax; numerics::nf4_absmax_mean over every piece's absmaxes gives the
  // mean; nf4_double_quantize gives a piece's scalers and factors against that mean. Over a whole weight the
  // three give nf4_quantize's bits.
  // w: [n] f32 or bf16, codes: [nb * 32] u8, absmax: [nb] f32
  virtual void nf4_encode(const Tensor& w, const Tensor& codes, const Tensor& absmax);
  // absmax: [nb] f32, mean: [1] in D (f32 or bf16), scalers: [nb] i8, factors: [ns] in D
  virtual void nf4_double_quantize(const Tensor& absmax, const Tensor& mean, const Tensor& scalers,
                                   const Tensor& factors);
  // out: [count] any floating dtype = elements [first, first + count) of the dequantized weight (computed
  // in the stored dtype, then cast), so a caller can dequantize a tile of rows at a time.
  virtual void nf4_dequantize(const Tensor& codes, const Tensor& scalers, const Tensor& factors, const Tensor& mean,
                              int64_t first, const Tensor& out);

 protected:
  [[noreturn]] void unsupported(std::string_view kernel) const;
  // The argument checks every backend's adamw_step / sgd_step makes: contiguous tensors on this device,
  // a reduced or single precision param, grad like param, f32 state (undefined entries are skipped).
  void check_update_args(std::string_view kernel, const Tensor& param, const Tensor& grad,
                         std::initializer_list<const Tensor*> state) const;
  // adamw_step_master's: those, with a bf16/f16 param and every state tensor (the master among them) present.
  void check_master_update_args(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& exp_avg,
                                const Tensor& exp_avg_sq) const;
  // Float8: x [R, C] floating and contiguous on this device; scale f32 [R, 1], [1, C] or [1, 1]
  // (contiguous); codes (when defined) [R, C] f8_e4m3 or f8_e5m2 (contiguous).
  void check_fp8_args(std::string_view kernel, const Tensor& x, const Tensor& scale, const Tensor& codes) const;
  void check_fp8_gemm_args(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                           const Tensor& out) const;
  // Every defined tensor lives on this backend's device: a kernel handed another device's memory would
  // read it as its own.
  void check_on_device(std::string_view kernel, std::initializer_list<const Tensor*> tensors) const;
  // t has ref's shape and dtype, is contiguous and on this device (the elementwise kernels' operands).
  void check_like(std::string_view kernel, const Tensor& ref, const char* ref_name, const Tensor& t,
                  const char* what) const;
  // Two [N, C] tensors of one shape and dtype, contiguous, on this device (the row kernels' operands).
  void check_row_pair(std::string_view kernel, const Tensor& a, const char* a_name, const Tensor& b,
                      const char* b_name) const;
  // QAT: the checks every backend's fake_quantize makes; returns the group size (spec's 0 resolved to C).
  int64_t check_fake_quantize_args(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& out,
                                   const Tensor& mask) const;
  void check_fake_quantize_backward_args(const Tensor& grad_out, const Tensor& mask, const Tensor& grad_x) const;
  void check_quantize_per_token_args(const Tensor& x, const numerics::FakeQuantSpec& spec, const Tensor& codes,
                                     const Tensor& scale, const Tensor& zero_point) const;
  // Returns the weight group size.
  int64_t check_int8_int4_linear_args(const Tensor& codes, const Tensor& x_scale, const Tensor& x_zp,
                                      const Tensor& w_packed, const Tensor& w_scale, const Tensor& out) const;
  // The model kernels' shape, dtype, layout and device checks, shared by the backends
  // (engine/backend_checks.cpp). Index values (ids, targets) are checked where they live: on the host by
  // the CPU, inside the kernel by CUDA.
  void check_reduce_args(const Tensor& x, const Tensor& out) const;
  void check_clip_by_norm_args(const Tensor& squares, const Tensor& grad) const;
  // table: [V, C] (the weight, or its gradient); ids: [N] i32 or i64; rows: [N, C] of table's dtype.
  void check_embedding_args(std::string_view kernel, const Tensor& table, const char* table_name, const Tensor& ids,
                            const Tensor& rows, const char* rows_name) const;
  // x, y: [N, C]; weight: [C], all one dtype; rstd: [N] f32 (f64 for f64).
  void check_rmsnorm_args(std::string_view kernel, const Tensor& x, const Tensor& weight, const Tensor& y,
                          const Tensor& rstd) const;
  void check_rope_args(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& y) const;
  void check_attention_args(std::string_view kernel, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse) const;
  // grad_out and grad_q like q, grad_k like k, grad_v like v.
  void check_attention_grads(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) const;
  // logits: [N, V]; targets: [N] i64; each stat: [N] f32 (f64 for f64 logits).
  void check_cross_entropy_args(std::string_view kernel, const Tensor& logits, const Tensor& targets,
                                std::initializer_list<std::pair<const Tensor*, const char*>> stats) const;
  // NF4: the checks both NF4 kernels make of the stored parts of a weight of `numel` elements (the layout
  // above; f32 or bf16 factors and mean, all contiguous on this device).
  void check_nf4_parts(std::string_view kernel, int64_t numel, const Tensor& codes, const Tensor& scalers,
                       const Tensor& factors, const Tensor& mean) const;
};

// The backend that owns `device`'s tensors (engine/backend_registry.h). Throws a clear error for a CUDA
// device when this build has no CUDA backend or the machine has no GPU.
Backend& backend_for(Device device);

}  // namespace qtune
