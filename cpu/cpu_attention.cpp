// Flash-attention style causal/non-causal SDPA with grouped-query heads on CPU.
//
// Forward: one task per (batch, query head, query tile); keys stream through in tiles with an
// online softmax (running max m, running sum l, rescaled accumulator), so only out and the
// log-sum-exp per query are written. Backward recomputes P = exp(S - lse) tile by tile and runs in
// two race-free passes: one task per (batch, kv head, key tile) owns dK/dV of that tile (summing
// over every query head of its group), one task per (batch, query head, query tile) owns dQ. That
// recomputes S and dP once more than a single pass would, but needs no atomics and no per-thread
// full-size accumulators. All scratch is tile-sized, in the accumulation type (f32, f64 for f64);
// the tile products go through Eigen, whose small-GEMM kernels vectorize far better than loops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

// The tasks are the parallelism; Eigen must not start threads of its own inside them.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/vec_exp.h"

namespace qtune::cpu {
namespace {

constexpr int64_t kTileQ = 64;
constexpr int64_t kTileK = 64;

struct Dims {
  int64_t batch, tq, tk, hq, hkv, d, group;
  int64_t causal_offset;  // query i sees key j <= i + causal_offset
  bool causal;
  int64_t q_tiles() const { return (tq + kTileQ - 1) / kTileQ; }
  int64_t k_tiles() const { return (tk + kTileK - 1) / kTileK; }
  // Keys [0, key_end) are visible to some query of [i0, i1).
  int64_t key_end(int64_t i1) const { return causal ? std::clamp(i1 + causal_offset, int64_t{0}, tk) : tk; }
  // Queries [query_begin, tq) see some key of a tile starting at j0.
  int64_t query_begin(int64_t j0) const { return causal ? std::clamp(j0 - causal_offset, int64_t{0}, tq) : 0; }
  // Tasks per thread so that a thread gets ~2^18 multiply-adds: waking OpenMP threads for less work
  // than that costs more than it saves (and far more on a loaded machine).
  static int64_t grain(int64_t work_per_task) {
    return std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, work_per_task));
  }
};

Dims dims_of(const Tensor& q, const Tensor& k, bool causal) {
  return Dims{
      q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), q.size(2) / k.size(2), k.size(1) - q.size(1),
      causal};
}

// Task t of `tiles` tiles per head: for causal attention later tiles carry more keys, so tiles are
// visited light, heavy, light, heavy... to keep contiguous chunks of tasks balanced across threads.
int64_t tile_of(int64_t t, int64_t tiles, bool causal) {
  if (!causal) return t;
  return t % 2 == 0 ? t / 2 : tiles - 1 - t / 2;
}

// dst[r][x] = src row r (rows `stride` elements apart), converted to A.
template <class T, class A>
void load_rows(const T* src, int64_t stride, int64_t rows, int64_t d, A* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < d; ++x) dst[r * d + x] = load(src + r * stride + x);
}

template <class A>
using TileMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A row-major tile in scratch: `rows` x `cols` with rows `stride` apart.
template <class A>
Eigen::Map<TileMat<A>, 0, Eigen::OuterStride<>> tile(A* p, int64_t rows, int64_t cols, int64_t stride) {
  return {p, rows, cols, Eigen::OuterStride<>(stride)};
}
template <class A>
Eigen::Map<const TileMat<A>, 0, Eigen::OuterStride<>> tile(const A* p, int64_t rows, int64_t cols, int64_t stride) {
  return {p, rows, cols, Eigen::OuterStride<>(stride)};
}

// s = alpha * a @ b^T for a: [rows, d], b: [cols, d]; s has rows kTileK apart.
template <class A>
void tile_scores(const A* a, const A* b, int64_t rows, int64_t cols, int64_t d, A alpha, A* s) {
  tile(s, rows, cols, kTileK).noalias() = alpha * tile(a, rows, d, d) * tile(b, cols, d, d).transpose();
}

// Sets s[r][c] = -inf where key j0 + c is in the future of query i0 + r.
template <class A>
void apply_causal_mask(const Dims& dm, int64_t i0, int64_t j0, int64_t rows, int64_t cols, A* s) {
  if (!dm.causal) return;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t visible = std::clamp(i0 + r + dm.causal_offset - j0 + 1, int64_t{0}, cols);
    std::fill(s + r * kTileK + visible, s + r * kTileK + cols, -std::numeric_limits<A>::infinity());
  }
}

// p[r][c] = exp(s[r][c] - lse[r]); a query that sees no key at all (lse = -inf) has p = 0. (A NaN
// lse stays NaN, so bad inputs show in the gradients too.)
template <class A>
void probabilities(const A* lse, int64_t rows, int64_t cols, A* s) {
  for (int64_t r = 0; r < rows; ++r) {
    A* sr = s + r * kTileK;
    if (lse[r] == -std::numeric_limits<A>::infinity()) {
      std::fill(sr, sr + cols, A(0));
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) sr[c] = vec_exp(sr[c] - lse[r]);
  }
}

// Row offsets (in elements) of q/out/grad rows and k/v rows of one head.
struct HeadRows {
  int64_t q_base, q_stride, k_base, k_stride, lse_base;
};

HeadRows head_rows(const Dims& dm, int64_t b, int64_t h) {
  const int64_t hk = h / dm.group;
  return {(b * dm.tq * dm.hq + h) * dm.d, dm.hq * dm.d, (b * dm.tk * dm.hkv + hk) * dm.d, dm.hkv * dm.d,
          (b * dm.hq + h) * dm.tq};
}

template <class T>
void forward_impl(const Dims& dm, const T* q, const T* k, const T* v, acc_t<T> scale, T* out, acc_t<T>* lse) {
  using A = acc_t<T>;
  const int64_t d = dm.d, tiles = dm.q_tiles();
  parallel_for(dm.batch * dm.hq * tiles, Dims::grain(kTileQ * dm.tk * d), [&](int64_t begin, int64_t end) {
    std::vector<A> qt(kTileQ * d), acc(kTileQ * d), kt(kTileK * d), vt(kTileK * d), s(kTileQ * kTileK);
    std::vector<A> m(kTileQ), l(kTileQ);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / tiles, b = bh / dm.hq, h = bh % dm.hq;
      const int64_t i0 = tile_of(task % tiles, tiles, dm.causal) * kTileQ, rows = std::min(kTileQ, dm.tq - i0);
      const HeadRows hr = head_rows(dm, b, h);
      load_rows(q + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, qt.data());
      std::fill(acc.begin(), acc.end(), A(0));
      std::fill(m.begin(), m.end(), -std::numeric_limits<A>::infinity());
      std::fill(l.begin(), l.end(), A(0));
      const int64_t key_end = dm.key_end(i0 + rows);
      for (int64_t j0 = 0; j0 < key_end; j0 += kTileK) {
        const int64_t cols = std::min(kTileK, key_end - j0);
        load_rows(k + hr.k_base + j0 * hr.k_stride, hr.k_stride, cols, d, kt.data());
        load_rows(v + hr.k_base + j0 * hr.k_stride, hr.k_stride, cols, d, vt.data());
        tile_scores(qt.data(), kt.data(), rows, cols, d, scale, s.data());
        apply_causal_mask(dm, i0, j0, rows, cols, s.data());
        for (int64_t r = 0; r < rows; ++r) {
          A* sr = s.data() + r * kTileK;
          const A m_new = std::max(m[r], *std::max_element(sr, sr + cols));
          if (m_new == -std::numeric_limits<A>::infinity()) {  // no visible key yet: contributes nothing
            std::fill(sr, sr + cols, A(0));
            continue;
          }
          // Rescale what was accumulated under the old max (exp(-inf) = 0 on the first tile).
          const A alpha = std::exp(m[r] - m_new);
          A* ar = acc.data() + r * d;
          for (int64_t x = 0; x < d; ++x) ar[x] *= alpha;
          for (int64_t c = 0; c < cols; ++c) sr[c] = vec_exp(sr[c] - m_new);
          A sum = 0;  // summed apart from the exponentials, which then vectorize
          for (int64_t c = 0; c < cols; ++c) sum += sr[c];
          l[r] = l[r] * alpha + sum;
          m[r] = m_new;
        }
        const A* sp = s.data();
        const A* vp = vt.data();
        tile(acc.data(), rows, d, d).noalias() += tile(sp, rows, cols, kTileK) * tile(vp, cols, d, d);
      }
      for (int64_t r = 0; r < rows; ++r) {
        T* o = out + hr.q_base + (i0 + r) * hr.q_stride;
        const A inv = l[r] > 0 ? A(1) / l[r] : A(0);
        for (int64_t x = 0; x < d; ++x) store(o + x, acc[r * d + x] * inv);
        lse[hr.lse_base + i0 + r] = l[r] > 0 ? m[r] + std::log(l[r]) : -std::numeric_limits<A>::infinity();
      }
    }
  });
}

// Scratch of one query tile in backward: q, dO, lse and D = rowsum(dO * O).
template <class T>
struct QueryTile {
  using A = acc_t<T>;
  std::vector<A> q, dout, lse, delta;
  explicit QueryTile(int64_t d) : q(kTileQ * d), dout(kTileQ * d), lse(kTileQ), delta(kTileQ) {}
  void load_tile(const Dims& dm, const HeadRows& hr, const T* qp, const T* outp, const T* gp, const A* lsep, int64_t i0,
                 int64_t rows) {
    const int64_t d = dm.d;
    load_rows(qp + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, q.data());
    load_rows(gp + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, dout.data());
    for (int64_t r = 0; r < rows; ++r) {
      const T* o = outp + hr.q_base + (i0 + r) * hr.q_stride;
      A dot = 0;
      for (int64_t x = 0; x < d; ++x) dot += dout[r * d + x] * load(o + x);
      delta[r] = dot;
      lse[r] = lsep[hr.lse_base + i0 + r];
    }
  }
};

// From q tile and k/v tiles: s <- P, dp <- dS = P * (dO V^T - D).
// kt, vt: the key and value tiles, [cols, d].
template <class T>
void recompute_ds(const Dims& dm, const QueryTile<T>& qt, const acc_t<T>* kt, const acc_t<T>* vt, int64_t i0,
                  int64_t j0, int64_t rows, int64_t cols, acc_t<T> scale, acc_t<T>* s, acc_t<T>* dp) {
  using A = acc_t<T>;
  tile_scores(qt.q.data(), kt, rows, cols, dm.d, scale, s);
  apply_causal_mask(dm, i0, j0, rows, cols, s);
  probabilities(qt.lse.data(), rows, cols, s);
  tile_scores(qt.dout.data(), vt, rows, cols, dm.d, A(1), dp);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dp[r * kTileK + c] = s[r * kTileK + c] * (dp[r * kTileK + c] - qt.delta[r]);
}

template <class T>
void backward_impl(const Dims& dm, const T* g, const T* q, const T* k, const T* v, const T* out, const acc_t<T>* lse,
                   acc_t<T> scale, T* gq, T* gk, T* gv) {
  using A = acc_t<T>;
  const int64_t d = dm.d;
  // Pass 1: dK, dV per (batch, kv head, key tile), summed over the query heads of the group.
  const int64_t ktiles = dm.k_tiles();
  parallel_for(dm.batch * dm.hkv * ktiles, Dims::grain(kTileK * dm.tq * dm.group * d), [&](int64_t begin, int64_t end) {
    QueryTile<T> qt(d);
    std::vector<A> kt(kTileK * d), vt(kTileK * d), dk(kTileK * d), dv(kTileK * d), s(kTileQ * kTileK),
        dp(kTileQ * kTileK);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / ktiles, b = bh / dm.hkv, hk = bh % dm.hkv;
      const int64_t j0 = tile_of(task % ktiles, ktiles, dm.causal) * kTileK;
      const int64_t cols = std::min(kTileK, dm.tk - j0);
      const HeadRows kr = head_rows(dm, b, hk * dm.group);
      load_rows(k + kr.k_base + j0 * kr.k_stride, kr.k_stride, cols, d, kt.data());
      load_rows(v + kr.k_base + j0 * kr.k_stride, kr.k_stride, cols, d, vt.data());
      std::fill(dk.begin(), dk.end(), A(0));
      std::fill(dv.begin(), dv.end(), A(0));
      for (int64_t h = hk * dm.group; h < (hk + 1) * dm.group; ++h) {
        const HeadRows hr = head_rows(dm, b, h);
        for (int64_t i0 = dm.query_begin(j0); i0 < dm.tq; i0 += kTileQ) {
          const int64_t rows = std::min(kTileQ, dm.tq - i0);
          qt.load_tile(dm, hr, q, out, g, lse, i0, rows);
          recompute_ds(dm, qt, kt.data(), vt.data(), i0, j0, rows, cols, scale, s.data(), dp.data());
          const A* sp = s.data();
          const A* dsp = dp.data();
          tile(dv.data(), cols, d, d).noalias() +=
              tile(sp, rows, cols, kTileK).transpose() * tile(qt.dout.data(), rows, d, d);
          tile(dk.data(), cols, d, d).noalias() +=
              scale * tile(dsp, rows, cols, kTileK).transpose() * tile(qt.q.data(), rows, d, d);
        }
      }
      for (int64_t c = 0; c < cols; ++c)
        for (int64_t x = 0; x < d; ++x) {
          store(gk + kr.k_base + (j0 + c) * kr.k_stride + x, dk[c * d + x]);
          store(gv + kr.k_base + (j0 + c) * kr.k_stride + x, dv[c * d + x]);
        }
    }
  });
  // Pass 2: dQ per (batch, query head, query tile).
  const int64_t qtiles = dm.q_tiles();
  parallel_for(dm.batch * dm.hq * qtiles, Dims::grain(kTileQ * dm.tk * d), [&](int64_t begin, int64_t end) {
    QueryTile<T> qt(d);
    std::vector<A> kt(kTileK * d), vt(kTileK * d), dq(kTileQ * d), s(kTileQ * kTileK), dp(kTileQ * kTileK);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / qtiles, b = bh / dm.hq, h = bh % dm.hq;
      const int64_t i0 = tile_of(task % qtiles, qtiles, dm.causal) * kTileQ, rows = std::min(kTileQ, dm.tq - i0);
      const HeadRows hr = head_rows(dm, b, h);
      qt.load_tile(dm, hr, q, out, g, lse, i0, rows);
      std::fill(dq.begin(), dq.end(), A(0));
      const int64_t key_end = dm.key_end(i0 + rows);
      for (int64_t j0 = 0; j0 < key_end; j0 += kTileK) {
        const int64_t cols = std::min(kTileK, key_end - j0);
        const T* kp = k + hr.k_base + j0 * hr.k_stride;
        load_rows(kp, hr.k_stride, cols, d, kt.data());
        load_rows(v + hr.k_base + j0 * hr.k_stride, hr.k_stride, cols, d, vt.data());
        recompute_ds(dm, qt, kt.data(), vt.data(), i0, j0, rows, cols, scale, s.data(), dp.data());
        const A* dsp = dp.data();
        const A* kp_tile = kt.data();
        tile(dq.data(), rows, d, d).noalias() += scale * tile(dsp, rows, cols, kTileK) * tile(kp_tile, cols, d, d);
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t x = 0; x < d; ++x) store(gq + hr.q_base + (i0 + r) * hr.q_stride + x, dq[r * d + x]);
    }
  });
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                           const Tensor& out, const Tensor& lse) {
  check_attention_args("attention", q, k, v, out, lse);
  const Dims dm = dims_of(q, k, causal);
  dispatch_float(q.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    forward_impl<T>(dm, ptr<T>(q), ptr<T>(k), ptr<T>(v), static_cast<A>(scale), ptr<T>(out), ptr<A>(lse));
  });
}

void CpuBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse, double scale, bool causal,
                                    const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) {
  check_attention_args("attention_backward", q, k, v, out, lse);
  check_attention_grads(grad_out, q, k, v, grad_q, grad_k, grad_v);
  const Dims dm = dims_of(q, k, causal);
  dispatch_float(q.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    backward_impl<T>(dm, ptr<T>(grad_out), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(out), ptr<A>(lse),
                     static_cast<A>(scale), ptr<T>(grad_q), ptr<T>(grad_k), ptr<T>(grad_v));
  });
}

}  // namespace qtune::cpu
