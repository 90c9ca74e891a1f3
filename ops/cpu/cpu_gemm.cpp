// GEMM through Eigen (f32 and f64). Reduced-precision operands are widened to f32 first.
#include <Eigen/Core>

#include "ops/cpu/cpu_backend.h"
#include "ops/cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using ConstMap = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using MutMap = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;

template <class S>
void gemm_batched(const S* a, int64_t a_batch, int64_t lda, bool ta, const S* b, int64_t b_batch, int64_t ldb,
                  bool tb, S* c, int64_t c_batch, int64_t ldc, int64_t batch, int64_t m, int64_t n, int64_t k,
                  S alpha, S beta) {
  for (int64_t i = 0; i < batch; ++i) {
    ConstMap<S> A(a + i * a_batch, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
    ConstMap<S> B(b + i * b_batch, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
    MutMap<S> C(c + i * c_batch, m, n, Eigen::OuterStride<>(ldc));
    if (beta == S(0)) C.setZero();
    else if (beta != S(1)) C *= beta;
    if (!ta && !tb) C.noalias() += alpha * A * B;
    else if (ta && !tb) C.noalias() += alpha * A.transpose() * B;
    else if (!ta && tb) C.noalias() += alpha * A * B.transpose();
    else C.noalias() += alpha * A.transpose() * B.transpose();
  }
}

// A contiguous f32 copy of a reduced-precision operand (keeps batch-0 strides meaning by making it dense).
Tensor widen_to_f32(const Tensor& t) { return t.dtype() == DType::f32 ? t : t.detach().to(DType::f32).contiguous(); }

}  // namespace

void CpuBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
                      double beta) {
  QTUNE_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "gemm: operands must be [batch, rows, cols], got ",
              shape_str(a.shape()), ", ", shape_str(b.shape()), ", ", shape_str(c.shape()));
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  QTUNE_CHECK((trans_a ? a.size(2) : a.size(1)) == m && (trans_b ? b.size(2) : b.size(1)) == k &&
                  (trans_b ? b.size(1) : b.size(2)) == n && a.size(0) == batch && b.size(0) == batch,
              "gemm: shapes do not agree: a ", shape_str(a.shape()), (trans_a ? "^T" : ""), ", b ",
              shape_str(b.shape()), (trans_b ? "^T" : ""), ", c ", shape_str(c.shape()));
  for (const Tensor* t : {&a, &b, &c})
    QTUNE_CHECK(t->stride(2) == 1 || t->size(2) == 1, "gemm: the last dim of every operand needs stride 1");
  QTUNE_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: operand dtypes differ (",
              dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), ", ", dtype_name(c.dtype()), ")");
  if (batch == 0 || m == 0 || n == 0) return;
  // Row stride; a single-row matrix may carry any stride there, so use its width.
  auto ld = [](const Tensor& t) { return t.size(1) > 1 ? t.stride(1) : t.size(2); };

  if (c.dtype() == DType::f64) {
    gemm_batched<double>(ptr<double>(a), a.stride(0), ld(a), trans_a, ptr<double>(b), b.stride(0), ld(b), trans_b,
                         ptr<double>(c), c.stride(0), ld(c), batch, m, n, k, alpha, beta);
    return;
  }
  if (c.dtype() == DType::f32) {
    gemm_batched<float>(ptr<float>(a), a.stride(0), ld(a), trans_a, ptr<float>(b), b.stride(0), ld(b), trans_b,
                        ptr<float>(c), c.stride(0), ld(c), batch, m, n, k, static_cast<float>(alpha),
                        static_cast<float>(beta));
    return;
  }
  dispatch_float(c.dtype(), "gemm", [&](auto) {});  // rejects non-float dtypes with a clear message
  const Tensor a32 = widen_to_f32(a), b32 = widen_to_f32(b);
  const Tensor c32 = widen_to_f32(c);
  gemm_batched<float>(ptr<float>(a32), a32.stride(0), ld(a32), trans_a, ptr<float>(b32), b32.stride(0), ld(b32),
                      trans_b, ptr<float>(c32), c32.stride(0), ld(c32), batch, m, n, k, static_cast<float>(alpha),
                      static_cast<float>(beta));
  copy(c32, c);
}

}  // namespace qtune::cpu
