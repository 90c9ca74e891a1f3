// oneDNN's matmul primitive for bf16/f16 GEMMs, taken only where the CPU multiplies the dtype natively
// (AVX512-BF16, AMX). Without those instructions oneDNN emulates bf16 in its gemm:jit (37 GFLOP/s against
// dnnl_sgemm's 101 on one AVX-512 core: widening wins) or has no kernel at all (AVX2), and the caller widens to
// f32 instead (cpu/cpu_gemm.cpp).
#include "cpu/cpu_onednn_matmul.h"

#include <array>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#if defined(QTUNE_USE_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cpu/kernel_util.h"

namespace qtune::cpu {

bool gemm_widen_forced() {
  const char* env = std::getenv("QTUNE_GEMM_WIDEN");
  return env != nullptr && std::strcmp(env, "1") == 0;
}

#if defined(QTUNE_USE_ONEDNN) && DNNL_VERSION_MAJOR == 2
namespace {

using dnnl::memory;

// Everything a primitive is specialized on, as a cache key. oneDNN fixes its thread split when it creates one,
// so the OpenMP thread count is part of it too.
using Key = std::array<int64_t, 16>;

struct KeyHash {
  size_t operator()(const Key& key) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : key) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

// Whether oneDNN may use bf16 dot-product instructions here: the CPU has them and DNNL_MAX_CPU_ISA allows them.
bool native_bf16_isa() {
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

// A product whose packing buffers would exceed what widening stages (three tiles of kWidenBlockElems f32
// values, cpu/cpu_gemm.cpp) widens instead. oneDNN 2.6 takes strided views (row stride > width) through
// gemm:jit, which accumulates all of C in f32 scratch: 131 MiB for a vocabulary-wide output head.
constexpr size_t kMaxScratchBytes = size_t(12) << 20;

bool accepted(const std::string& impl, size_t scratch_bytes) {
  return native_bf16_isa() && impl.rfind("ref", 0) != 0 && scratch_bytes <= kMaxScratchBytes;
}

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

int threads_now() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int64_t bits(float v) { return std::bit_cast<int32_t>(v); }

// One GEMM as matmul sees it. Strides are in elements: {batch, row}; a batch stride of 0 marks a matrix the
// batch shares.
struct Product {
  DType dtype;
  bool ta, tb;
  int64_t batch, m, n, k;
  std::array<int64_t, 2> sa, sb, sc;
  float alpha, beta;

  Key key() const {
    return {int64_t(dtype), ta,    tb,    batch, m,     n,           k,          sa[0],
            sa[1],          sb[0], sb[1], sc[0], sc[1], bits(alpha), bits(beta), threads_now()};
  }

  // Transposes live in the strides only: op(a) [m, k] of a stored [k, m] matrix with row stride lda steps 1
  // along m and lda along k. A shared operand is a batch of one, which matmul broadcasts.
  struct Descs {
    memory::desc src, weights, dst;
  };
  Descs descs() const {
    const auto dt = dtype == DType::bf16 ? memory::data_type::bf16 : memory::data_type::f16;
    const int64_t ba = sa[0] == 0 ? 1 : batch, bb = sb[0] == 0 ? 1 : batch;
    // The batch stride of a batch of one is never stepped; give it a plain value rather than 0.
    const int64_t a0 = sa[0] == 0 ? m * k : sa[0], b0 = sb[0] == 0 ? k * n : sb[0], c0 = sc[0] == 0 ? m * n : sc[0];
    return {memory::desc({ba, m, k}, dt, ta ? memory::dims{a0, 1, sa[1]} : memory::dims{a0, sa[1], 1}),
            memory::desc({bb, k, n}, dt, tb ? memory::dims{b0, 1, sb[1]} : memory::dims{b0, sb[1], 1}),
            memory::desc({batch, m, n}, dt, memory::dims{c0, sc[1], 1})};
  }
};

struct Plan {
  dnnl::matmul primitive;  // empty when oneDNN has no kernel worth taking for this key
  Product::Descs descs;
  memory::desc scratch;
  std::string impl;
};

Plan make_plan(const Product& p) {
  Plan plan;
  try {
    const Product::Descs d = p.descs();  // refused (caught below) for strides that overlap
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // packing buffers come from qtune's allocator
    if (p.alpha != 1.0f) attr.set_output_scales(0, {p.alpha});
    if (p.beta != 0.0f) {  // without the sum post-op C is written only, never read (BLAS's beta = 0)
      dnnl::post_ops ops;
      ops.append_sum(p.beta);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(d.src, d.weights, d.dst), attr, cpu_engine());
    plan.impl = pd.impl_info_str();
    if (accepted(plan.impl, pd.scratchpad_desc().get_size())) {
      plan.primitive = dnnl::matmul(pd);
      plan.descs = d;
      plan.scratch = pd.scratchpad_desc();
    }
  } catch (const dnnl::error& e) {
    plan.impl = std::string("no implementation: ") + e.what();
  }
  return plan;
}

// Primitives by key. Creating one JIT-compiles kernels (about a millisecond); a training step reuses a few
// dozen shapes, generation adds one per prompt length, so a full cache starts over rather than tracking use.
class PlanCache {
 public:
  // Shared, so a plan stays alive for a caller while another thread's insertion starts the cache over.
  std::shared_ptr<const Plan> get(const Product& p) {
    const Key key = p.key();
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    if (plans_.size() >= kCapacity) plans_.clear();
    return plans_.emplace(key, std::make_shared<const Plan>(make_plan(p))).first->second;
  }

 private:
  static constexpr size_t kCapacity = 512;
  std::mutex mutex_;
  std::unordered_map<Key, std::shared_ptr<const Plan>, KeyHash> plans_;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

}  // namespace

bool onednn_matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
                   double beta) {
  const DType dtype = c.dtype();
  if ((dtype != DType::bf16 && dtype != DType::f16) || gemm_widen_forced() || !native_bf16_isa()) return false;
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2), k = trans_a ? a.size(1) : a.size(2);
  if (k == 0 || (batch > 1 && c.stride(0) == 0)) return false;
  // Row strides as Backend::gemm defines them; a single-row matrix may carry any stride there.
  auto ld = [](const Tensor& t) { return t.size(1) > 1 ? t.stride(1) : t.size(2); };
  const int64_t lda = ld(a), ldb = ld(b), ldc = ld(c);
  // Overlapping rows (a row-broadcast view) have no matmul descriptor.
  if (lda < a.size(2) || ldb < b.size(2) || ldc < n) return false;
  // With one matrix the batch strides are never stepped: 0 for all, so every such product shares a plan.
  auto batch_stride = [&](const Tensor& t) { return batch > 1 ? t.stride(0) : 0; };
  const Product p{dtype,
                  trans_a,
                  trans_b,
                  batch,
                  m,
                  n,
                  k,
                  {batch_stride(a), lda},
                  {batch_stride(b), ldb},
                  {batch_stride(c), ldc},
                  float(alpha),
                  float(beta)};
  const std::shared_ptr<const Plan> plan = plan_cache().get(p);
  if (!plan->primitive) return false;
  const Product::Descs& d = plan->descs;

  dnnl::engine& engine = cpu_engine();
  thread_local dnnl::stream stream(engine);
  const Tensor scratch = Tensor::empty({int64_t(plan->scratch.get_size())}, DType::u8);
  try {
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, memory(d.src, engine, a.data_ptr())},
                                     {DNNL_ARG_WEIGHTS, memory(d.weights, engine, b.data_ptr())},
                                     {DNNL_ARG_DST, memory(d.dst, engine, c.data_ptr())},
                                     {DNNL_ARG_SCRATCHPAD, memory(plan->scratch, engine, scratch.data_ptr())}});
    stream.wait();  // a no-op with the OpenMP runtime; scratch must outlive the call on any other
  } catch (const dnnl::error& e) {
    QTUNE_FAIL("gemm: oneDNN matmul (", plan->impl, ") failed on ", m, "x", n, "x", k, ": ", e.what());
  }
  return true;
}

namespace {

// The plan of a plain 64x64x64 product: the kernel family oneDNN picks does not depend on the shape.
std::shared_ptr<const Plan> probe(DType dtype) {
  return plan_cache().get(Product{dtype, false, false, 1, 64, 64, 64, {0, 64}, {0, 64}, {0, 64}, 1.0f, 0.0f});
}

}  // namespace

bool reduced_gemm_native(DType dtype) {
  return (dtype == DType::bf16 || dtype == DType::f16) && !gemm_widen_forced() && native_bf16_isa() &&
         probe(dtype)->primitive;
}

std::string reduced_gemm_path(DType dtype) {
  if (dtype != DType::bf16 && dtype != DType::f16) return "not a reduced-precision dtype";
  if (gemm_widen_forced()) return "widened to f32 (QTUNE_GEMM_WIDEN=1)";
  const std::shared_ptr<const Plan> held = probe(dtype);
  const Plan& plan = *held;
  if (plan.primitive) return "oneDNN matmul (" + plan.impl + ")";
  const std::string onednn = "oneDNN " + std::to_string(DNNL_VERSION_MAJOR) + "." + std::to_string(DNNL_VERSION_MINOR);
  if (!native_bf16_isa())
    return "widened to f32 (no " + std::string(dtype_name(dtype)) + " instructions for " + onednn + " on this CPU)";
  if (plan.impl.rfind("no implementation", 0) == 0)
    return "widened to f32 (" + onednn + " has no " + std::string(dtype_name(dtype)) + " matmul for this CPU)";
  return "widened to f32 (" + onednn + " offers only " + plan.impl + " for " + std::string(dtype_name(dtype)) +
         " here)";
}

#else

bool onednn_matmul(const Tensor&, bool, const Tensor&, bool, const Tensor&, double, double) { return false; }

bool reduced_gemm_native(DType) { return false; }

std::string reduced_gemm_path(DType dtype) {
  if (dtype != DType::bf16 && dtype != DType::f16) return "not a reduced-precision dtype";
#if defined(QTUNE_USE_ONEDNN)
  return "widened to f32 (the matmul path is written for oneDNN 2.x, this build has " +
         std::to_string(DNNL_VERSION_MAJOR) + ".x)";
#else
  return "widened to f32 (this build's GEMM library is not oneDNN, which has the native path)";
#endif
}

#endif

}  // namespace qtune::cpu
