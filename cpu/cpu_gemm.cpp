// GEMM: one library call per matrix. f32 goes to the library chosen at configure time (QTUNE_BLAS:
// OpenBLAS, oneDNN or Eigen; tools/bench/README.md has the measurements behind the default), f64 to
// OpenBLAS's dgemm or Eigen. bf16/f16 run natively through oneDNN's matmul where the CPU has the instructions
// (cpu/cpu_onednn_matmul.cpp); elsewhere, or with QTUNE_GEMM_WIDEN=1, they are widened to f32 one block at a
// time (kWidenBlockElems). Both accumulate in f32 and round once.
#include <Eigen/Core>
#include <algorithm>
#include <climits>

#if defined(QTUNE_USE_OPENBLAS)
#include <cblas.h>
#endif
#if defined(QTUNE_USE_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#endif

#include "cpu/bf16_tile_gemm.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_onednn_matmul.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using ConstMap = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using MutMap = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;

// One row-major matrix product; ld* are row strides in elements.
struct GemmArgs {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
};

template <class S>
void eigen_gemm(const GemmArgs& g, const S* a, const S* b, S* c, S alpha, S beta) {
  ConstMap<S> A(a, g.ta ? g.k : g.m, g.ta ? g.m : g.k, Eigen::OuterStride<>(g.lda));
  ConstMap<S> B(b, g.tb ? g.n : g.k, g.tb ? g.k : g.n, Eigen::OuterStride<>(g.ldb));
  MutMap<S> C(c, g.m, g.n, Eigen::OuterStride<>(g.ldc));
  if (beta == S(0))
    C.setZero();  // BLAS semantics: C is not read when beta is 0 (NaNs there do not leak)
  else if (beta != S(1))
    C *= beta;
  if (g.k == 0) return;
  if (!g.ta && !g.tb)
    C.noalias() += alpha * A * B;
  else if (g.ta && !g.tb)
    C.noalias() += alpha * A.transpose() * B;
  else if (!g.ta && g.tb)
    C.noalias() += alpha * A * B.transpose();
  else
    C.noalias() += alpha * A.transpose() * B.transpose();
}

// BLAS-style interfaces take 32-bit sizes and need each row stride to cover its row (lda >= cols);
// views with overlapping rows (row stride 0 from expand) or huge sizes take the Eigen path instead.
[[maybe_unused]] bool blas_compatible(const GemmArgs& g) {
  auto fits = [](int64_t v) { return v >= 0 && v <= INT_MAX; };
  const int64_t a_cols = g.ta ? g.m : g.k, b_cols = g.tb ? g.k : g.n;
  return fits(g.m) && fits(g.n) && fits(g.k) && fits(g.lda) && fits(g.ldb) && fits(g.ldc) &&
         g.lda >= std::max<int64_t>(1, a_cols) && g.ldb >= std::max<int64_t>(1, b_cols) &&
         g.ldc >= std::max<int64_t>(1, g.n);
}

#if defined(QTUNE_USE_OPENBLAS)
// A product with one output row or column is a matrix-vector product. sgemm would first pack the whole
// matrix operand into its panel layout (a full copy per call: at one token per step in generation that
// copy costs more than the product); gemv streams the matrix once. Returns false when neither m nor n is 1.
template <class S>
bool blas_gemv(const GemmArgs& g, const S* a, const S* b, S* c, S alpha, S beta) {
  if (g.m != 1 && g.n != 1) return false;
  const bool row = g.m == 1;  // c[1, n] = a[1, k] op(b)  or  c[m, 1] = op(a) b[k, 1]
  // The matrix as stored (row-major, `rows` x `cols`, stride ld) and whether gemv must transpose it.
  const S* mat = row ? b : a;
  const bool mat_t = row ? !g.tb : g.ta;
  const int64_t out = row ? g.n : g.m;
  const int rows = int(mat_t ? g.k : out), cols = int(mat_t ? out : g.k), ld = int(row ? g.ldb : g.lda);
  // The vector operand's element stride: a [1, k] row is contiguous, a [k, 1] column steps by its row stride.
  const S* vec = row ? a : b;
  const int inc_vec = int(row ? (g.ta ? g.lda : 1) : (g.tb ? 1 : g.ldb));
  const int inc_out = int(row ? 1 : g.ldc);
  if (beta == S(0)) {
    // BLAS does not read c when beta is 0; some gemv kernels scale it instead, which keeps NaNs.
    for (int64_t i = 0; i < out; ++i) c[i * inc_out] = S(0);
  }
  const auto trans = mat_t ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<S, float>)
    cblas_sgemv(CblasRowMajor, trans, rows, cols, alpha, mat, ld, vec, inc_vec, beta, c, inc_out);
  else
    cblas_dgemv(CblasRowMajor, trans, rows, cols, alpha, mat, ld, vec, inc_vec, beta, c, inc_out);
  return true;
}
#endif

template <class S>
void gemm_one(const GemmArgs& g, const S* a, const S* b, S* c, S alpha, S beta) {
#if defined(QTUNE_USE_OPENBLAS)
  if (blas_compatible(g)) {
    if (g.k > 0 && blas_gemv(g, a, b, c, alpha, beta)) return;
    const auto ta = g.ta ? CblasTrans : CblasNoTrans, tb = g.tb ? CblasTrans : CblasNoTrans;
    const int m = int(g.m), n = int(g.n), k = int(g.k), lda = int(g.lda), ldb = int(g.ldb), ldc = int(g.ldc);
    if constexpr (std::is_same_v<S, float>)
      cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
      cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#elif defined(QTUNE_USE_ONEDNN)
  if constexpr (std::is_same_v<S, float>) {  // oneDNN has no f64 GEMM: f64 stays on Eigen
    // dnnl_sgemm refuses k = 0 (invalid arguments); Eigen leaves beta * c, as the product is empty.
    if (g.k > 0 && blas_compatible(g)) {
      const dnnl_status_t st =
          dnnl_sgemm(g.ta ? 'T' : 'N', g.tb ? 'T' : 'N', g.m, g.n, g.k, alpha, a, g.lda, b, g.ldb, beta, c, g.ldc);
      QTUNE_CHECK(st == dnnl_success, "gemm: dnnl_sgemm failed with status ", int(st));
      return;
    }
  }
#endif
  eigen_gemm(g, a, b, c, alpha, beta);
}

template <class S>
void gemm_batched(const GemmArgs& g, const S* a, int64_t a_batch, const S* b, int64_t b_batch, S* c, int64_t c_batch,
                  int64_t batch, S alpha, S beta) {
  // Each call is multithreaded by the library; splitting the batch across threads as well would
  // oversubscribe the cores.
  for (int64_t i = 0; i < batch; ++i) gemm_one(g, a + i * a_batch, b + i * b_batch, c + i * c_batch, alpha, beta);
}

// Staging between a [1, rows, cols] block of a bf16/f16 operand (last dim contiguous, any row stride) and a
// contiguous f32 tile, rows split across threads: it runs at memory speed rather than through the generic
// strided copy, since every reduced-precision GEMM pays it once per element of each operand.
template <class S>
Tensor widen_block(const Tensor& block) {
  Tensor tile = Tensor::empty(block.shape(), DType::f32);
  const int64_t rows = block.size(1), cols = block.size(2), ld = block.stride(1);
  const S* src = ptr<S>(block);
  float* dst = ptr<float>(tile);
  parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = load(src + r * ld + j);
  });
  return tile;
}

template <class S>
void narrow_tile(const Tensor& tile, const Tensor& block) {
  const int64_t rows = block.size(1), cols = block.size(2), ld = block.stride(1);
  const float* src = ptr<float>(tile);
  S* dst = ptr<S>(block);
  parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < cols; ++j) store(dst + r * ld + j, src[r * cols + j]);
  });
}

// Staging for bf16/f16 operands: tiles of op(a) [mb, kb], op(b) [kb, nb] and c [mb, nb], each at most
// kWidenBlockElems f32 elements. Widening whole operands would hold an f32 copy of a frozen weight for the
// length of the call (the output head's is 125 MiB at vocab 32000, hidden 1024), which at bf16 dominated a
// LoRA step's memory. Splitting K (at most kWidenMaxK per tile, accumulated in the f32 C tile) keeps both
// tile sides wide when K is the vocabulary, so no operand is widened more than a few times over.
constexpr int64_t kWidenBlockElems = int64_t(1) << 20;
constexpr int64_t kWidenMaxK = 1024;

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
  QTUNE_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: operand dtypes differ (", dtype_name(a.dtype()),
              ", ", dtype_name(b.dtype()), ", ", dtype_name(c.dtype()), ")");
  if (batch == 0 || m == 0 || n == 0) return;
  // Row stride; a single-row matrix may carry any stride there, so use its width.
  auto ld = [](const Tensor& t) { return t.size(1) > 1 ? t.stride(1) : t.size(2); };
  auto args = [&](const Tensor& ta, const Tensor& tb, const Tensor& tc) {
    return GemmArgs{trans_a, trans_b, m, n, k, ld(ta), ld(tb), ld(tc)};
  };

  if (c.dtype() == DType::f64) {
    gemm_batched<double>(args(a, b, c), ptr<double>(a), a.stride(0), ptr<double>(b), b.stride(0), ptr<double>(c),
                         c.stride(0), batch, alpha, beta);
    return;
  }
  if (c.dtype() == DType::f32) {
    gemm_batched<float>(args(a, b, c), ptr<float>(a), a.stride(0), ptr<float>(b), b.stride(0), ptr<float>(c),
                        c.stride(0), batch, static_cast<float>(alpha), static_cast<float>(beta));
    return;
  }
  if (onednn_matmul(a, trans_a, b, trans_b, c, alpha, beta)) return;
  // bf16/f16 widened (dispatch_float rejects non-float dtypes with a clear message).
  dispatch_float(c.dtype(), "gemm", [&](auto s) {
    using S = decltype(s);
    const int64_t kb = std::clamp<int64_t>(k, 1, kWidenMaxK);
    const int64_t nb = std::clamp<int64_t>(kWidenBlockElems / kb, 1, n);
    const int64_t mb = std::clamp<int64_t>(std::min(kWidenBlockElems / kb, kWidenBlockElems / nb), 1, m);
    for (int64_t p = 0; p < batch; ++p) {
      const Tensor ap = a.narrow(0, p, 1), bp = b.narrow(0, p, 1), cp = c.narrow(0, p, 1);
      // An operand within the budget is widened once; its tiles are then views of that copy.
      const Tensor a_whole = m * k <= kWidenBlockElems ? widen_block<S>(ap) : Tensor();
      const Tensor b_whole = k * n <= kWidenBlockElems ? widen_block<S>(bp) : Tensor();
      auto a_tile = [&](int64_t m0, int64_t m_len, int64_t k0, int64_t k_len) {
        auto cut = [&](const Tensor& t) {
          return t.narrow(trans_a ? 2 : 1, m0, m_len).narrow(trans_a ? 1 : 2, k0, k_len);
        };
        return a_whole.defined() ? cut(a_whole) : widen_block<S>(cut(ap));
      };
      auto b_tile = [&](int64_t k0, int64_t k_len, int64_t n0, int64_t n_len) {
        auto cut = [&](const Tensor& t) {
          return t.narrow(trans_b ? 2 : 1, k0, k_len).narrow(trans_b ? 1 : 2, n0, n_len);
        };
        return b_whole.defined() ? cut(b_whole) : widen_block<S>(cut(bp));
      };
      for (int64_t m0 = 0; m0 < m; m0 += mb) {
        const int64_t m_len = std::min(mb, m - m0);
        for (int64_t n0 = 0; n0 < n; n0 += nb) {
          const int64_t n_len = std::min(nb, n - n0);
          const Tensor c_block = cp.narrow(1, m0, m_len).narrow(2, n0, n_len);
          // With beta 0 the old C is never read: skip widening it.
          const Tensor c32 = beta == 0.0 ? Tensor::empty(c_block.shape(), DType::f32) : widen_block<S>(c_block);
          // K tiles after the first accumulate (beta 1); with k = 0 one empty product still applies beta.
          for (int64_t k0 = 0; k0 == 0 || k0 < k; k0 += kb) {
            const int64_t k_len = std::min(kb, k - k0);
            const Tensor a32 = a_tile(m0, m_len, k0, k_len), b32 = b_tile(k0, k_len, n0, n_len);
            const GemmArgs g{trans_a, trans_b, m_len, n_len, k_len, ld(a32), ld(b32), ld(c32)};
            gemm_one<float>(g, ptr<float>(a32), ptr<float>(b32), ptr<float>(c32), static_cast<float>(alpha),
                            k0 == 0 ? static_cast<float>(beta) : 1.0f);
          }
          narrow_tile<S>(c32, c_block);
        }
      }
    }
  });
}

bool CpuBackend::gemm_native(DType dtype) {
  return (dtype != DType::bf16 && dtype != DType::f16) || reduced_gemm_native(dtype);
}

std::string CpuBackend::gemm_path(DType dtype) {
  switch (dtype) {
    case DType::f64:
#if defined(QTUNE_USE_OPENBLAS)
      return "OpenBLAS dgemm";
#else
      return "Eigen";
#endif
    case DType::f32:
#if defined(QTUNE_USE_OPENBLAS)
      return "OpenBLAS sgemm";
#elif defined(QTUNE_USE_ONEDNN)
      return "oneDNN sgemm";
#else
      return "Eigen";
#endif
    default:
      // Attention's tile products are GEMMs too, with a kernel of their own (cpu/bf16_tile_gemm.h).
      return reduced_gemm_path(dtype) +
             (dtype == DType::bf16 && bf16_tile_gemm_native() ? "; attention tiles on vdpbf16ps" : "");
  }
}

}  // namespace qtune::cpu
