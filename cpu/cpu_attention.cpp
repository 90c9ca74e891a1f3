// Flash-attention style causal/non-causal SDPA with grouped-query heads on CPU.
//
// Forward: one task per (batch, query head, query tile); keys stream through in tiles with an
// online softmax (running max m, running sum l, rescaled accumulator), so only out and the
// log-sum-exp per query are written. Backward recomputes P = exp(S - lse) tile by tile and runs in
// two race-free passes: one task per (batch, kv head, key tile) owns dK/dV of that tile (summing
// over every query head of its group), one task per (batch, query head, query tile) owns dQ. That
// recomputes S and dP once more than a single pass would, but needs no atomics and no per-thread
// full-size accumulators. All scratch is tile-sized: in the accumulation type (f32, f64 for f64), and the
// bf16 path's operands as bf16 pairs; the tile products go through Eigen, whose small-GEMM kernels vectorize
// far better than loops.
//
// bf16 on a CPU with AVX512-BF16 takes its tile products on the bf16 dot-product instruction instead
// (bf16_tile_gemm.h): Q, K, V and dO are bf16 already, and P and dS are rounded to bf16 before their
// products, as flash attention does on GPUs; the softmax bookkeeping stays in f32.
#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// The tasks are the parallelism; Eigen must not start threads of its own inside them.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include "cpu/bf16_tile_gemm.h"
#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/row_max.h"
#include "cpu/row_sum.h"
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
    const A shift = lse[r];  // a local: read through lse, the store to sr could alias it and stop vectorization
    for (int64_t c = 0; c < cols; ++c) sr[c] = vec_exp(sr[c] - shift);
  }
}

// One key tile of the online softmax: s ([rows, cols], rows kTileK apart) holds the tile's scaled,
// masked scores and leaves holding exp(s - m_new); m and l (running max and sum per row) move on, and acc
// ([rows, d]) is rescaled to the new max.
template <class A>
void online_softmax(int64_t rows, int64_t cols, int64_t d, A* s, A* m, A* l, A* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    A* sr = s + r * kTileK;
    const A m_new = std::max(m[r], row_max(sr, cols));
    if (m_new == -std::numeric_limits<A>::infinity()) {
      if (std::none_of(sr, sr + cols, [](A x) { return x != x; })) {  // no visible key yet: contributes nothing
        std::fill(sr, sr + cols, A(0));
        continue;
      }
      // Only NaN scores (a NaN in the query, say): row_max skipped them. A NaN running max, sum and
      // accumulator make the row's output and lse NaN, as a bad input should show, and stay so.
      constexpr A nan = std::numeric_limits<A>::quiet_NaN();
      m[r] = l[r] = nan;
      std::fill(sr, sr + cols, nan);
      std::fill(acc + r * d, acc + (r + 1) * d, nan);
      continue;
    }
    // Rescale what was accumulated under the old max (exp(-inf) = 0 on the first tile).
    const A alpha = std::exp(m[r] - m_new);
    A* ar = acc + r * d;
    for (int64_t x = 0; x < d; ++x) ar[x] *= alpha;
    const A sum = row_sum<A>(cols, [sr, m_new](int64_t c) {
      const A e = vec_exp(sr[c] - m_new);
      sr[c] = e;
      return e;
    });
    l[r] = l[r] * alpha + sum;
    m[r] = m_new;
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

// The forward's last step for a query tile: out = acc / l and lse = m + log l per row.
template <class T, class A>
void finish_rows(const HeadRows& hr, int64_t i0, int64_t rows, int64_t d, const A* acc, const A* m, const A* l, T* out,
                 A* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    T* o = out + hr.q_base + (i0 + r) * hr.q_stride;
    // l = 0: the query saw no key; a NaN l (bad inputs) carries into out and lse.
    const A inv = l[r] == 0 ? A(0) : A(1) / l[r];
    for (int64_t x = 0; x < d; ++x) store(o + x, acc[r * d + x] * inv);
    lse[hr.lse_base + i0 + r] = l[r] == 0 ? -std::numeric_limits<A>::infinity() : m[r] + std::log(l[r]);
  }
}

// A key tile's dK and dV ([cols, d] scratch) into grad_k and grad_v; a query tile's dQ into grad_q.
template <class T, class A>
void store_key_grads(const HeadRows& kr, int64_t j0, int64_t cols, int64_t d, const A* dk, const A* dv, T* gk, T* gv) {
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t x = 0; x < d; ++x) {
      store(gk + kr.k_base + (j0 + c) * kr.k_stride + x, dk[c * d + x]);
      store(gv + kr.k_base + (j0 + c) * kr.k_stride + x, dv[c * d + x]);
    }
}
template <class T, class A>
void store_query_grads(const HeadRows& hr, int64_t i0, int64_t rows, int64_t d, const A* dq, T* gq) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < d; ++x) store(gq + hr.q_base + (i0 + r) * hr.q_stride + x, dq[r * d + x]);
}

// D of every query row, laid out as lse ([batch, hq, tq]). Each is needed by every key tile the row sees, so
// it is summed once here rather than again with each of them.
template <class T>
std::vector<acc_t<T>> row_deltas(const Dims& dm, const T* grad, const T* out) {
  using A = acc_t<T>;
  std::vector<A> deltas(dm.batch * dm.hq * dm.tq);
  parallel_for(dm.batch * dm.hq, Dims::grain(dm.tq * dm.d), [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const HeadRows hr = head_rows(dm, bh / dm.hq, bh % dm.hq);
      for (int64_t i = 0; i < dm.tq; ++i) {
        const int64_t row = hr.q_base + i * hr.q_stride;
        deltas[hr.lse_base + i] =
            row_sum<A>(dm.d, [&](int64_t x) { return A(load(grad + row + x)) * load(out + row + x); });
      }
    }
  });
  return deltas;
}

// dp <- dS = P * (dp - D) for p = P and dp = dO V^T of a tile (rows kTileK apart).
template <class A>
void softmax_grad(int64_t rows, int64_t cols, const A* p, const A* delta, A* dp) {
  for (int64_t r = 0; r < rows; ++r) {
    const A d = delta[r];  // a local, as in probabilities
    for (int64_t c = 0; c < cols; ++c) dp[r * kTileK + c] = p[r * kTileK + c] * (dp[r * kTileK + c] - d);
  }
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
        online_softmax(rows, cols, d, s.data(), m.data(), l.data(), acc.data());
        const A* sp = s.data();
        const A* vp = vt.data();
        tile(acc.data(), rows, d, d).noalias() += tile(sp, rows, cols, kTileK) * tile(vp, cols, d, d);
      }
      finish_rows(hr, i0, rows, d, acc.data(), m.data(), l.data(), out, lse);
    }
  });
}

// Scratch of one query tile in backward: q, dO, lse and D = rowsum(dO * O).
template <class T>
struct QueryTile {
  using A = acc_t<T>;
  std::vector<A> q, dout, lse, delta;
  explicit QueryTile(int64_t d) : q(kTileQ * d), dout(kTileQ * d), lse(kTileQ), delta(kTileQ) {}
  // deltas: row_deltas's.
  void load_tile(const Dims& dm, const HeadRows& hr, const T* qp, const T* gp, const A* lsep, const A* deltas,
                 int64_t i0, int64_t rows) {
    const int64_t d = dm.d;
    load_rows(qp + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, q.data());
    load_rows(gp + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, dout.data());
    std::copy_n(lsep + hr.lse_base + i0, rows, lse.begin());
    std::copy_n(deltas + hr.lse_base + i0, rows, delta.begin());
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
  softmax_grad(rows, cols, s, qt.delta.data(), dp);
}

template <class T>
void backward_impl(const Dims& dm, const T* g, const T* q, const T* k, const T* v, const T* out, const acc_t<T>* lse,
                   acc_t<T> scale, T* gq, T* gk, T* gv) {
  using A = acc_t<T>;
  const int64_t d = dm.d;
  const std::vector<A> deltas = row_deltas(dm, g, out);
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
          qt.load_tile(dm, hr, q, g, lse, deltas.data(), i0, rows);
          recompute_ds(dm, qt, kt.data(), vt.data(), i0, j0, rows, cols, scale, s.data(), dp.data());
          const A* sp = s.data();
          const A* dsp = dp.data();
          tile(dv.data(), cols, d, d).noalias() +=
              tile(sp, rows, cols, kTileK).transpose() * tile(qt.dout.data(), rows, d, d);
          tile(dk.data(), cols, d, d).noalias() +=
              scale * tile(dsp, rows, cols, kTileK).transpose() * tile(qt.q.data(), rows, d, d);
        }
      }
      store_key_grads(kr, j0, cols, d, dk.data(), dv.data(), gk, gv);
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
      qt.load_tile(dm, hr, q, g, lse, deltas.data(), i0, rows);
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
      store_query_grads(hr, i0, rows, d, dq.data(), gq);
    }
  });
}

// The bf16 path (bf16_tile_gemm_native()). Tiles travel as bf16 pairs (bf16_tile_gemm.h); kPairsK / kPairsQ
// are the pair counts of a key / query tile's rows.
constexpr int64_t kPairsK = kTileK / 2, kPairsQ = kTileQ / 2;

void forward_bf16(const Dims& dm, const bf16_t* q, const bf16_t* k, const bf16_t* v, float scale, bf16_t* out,
                  float* lse) {
  const int64_t d = dm.d, d2 = (d + 1) / 2, tiles = dm.q_tiles();
  parallel_for(dm.batch * dm.hq * tiles, Dims::grain(kTileQ * dm.tk * d), [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> qa(kTileQ * d2), kb(d2 * kTileK), vb(kPairsK * d), pa(kTileQ * kPairsK);
    std::vector<float> acc(kTileQ * d), s(kTileQ * kTileK), m(kTileQ), l(kTileQ);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / tiles, b = bh / dm.hq, h = bh % dm.hq;
      const int64_t i0 = tile_of(task % tiles, tiles, dm.causal) * kTileQ, rows = std::min(kTileQ, dm.tq - i0);
      const HeadRows hr = head_rows(dm, b, h);
      pack_a_rows(q + hr.q_base + i0 * hr.q_stride, hr.q_stride, rows, d, qa.data(), d2);
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.0f);
      const int64_t key_end = dm.key_end(i0 + rows);
      for (int64_t j0 = 0; j0 < key_end; j0 += kTileK) {
        const int64_t cols = std::min(kTileK, key_end - j0);
        pack_b_transposed(k + hr.k_base + j0 * hr.k_stride, hr.k_stride, cols, d, kb.data(), kTileK);
        pack_b_rows(v + hr.k_base + j0 * hr.k_stride, hr.k_stride, cols, d, vb.data(), d);
        bf16_tile_gemm(rows, cols, d2, qa.data(), d2, kb.data(), kTileK, scale, false, s.data(), kTileK);
        apply_causal_mask(dm, i0, j0, rows, cols, s.data());
        online_softmax(rows, cols, d, s.data(), m.data(), l.data(), acc.data());
        pack_a_rounded(s.data(), kTileK, rows, cols, pa.data(), kPairsK);
        bf16_tile_gemm(rows, d, (cols + 1) / 2, pa.data(), kPairsK, vb.data(), d, 1.0f, true, acc.data(), d);
      }
      finish_rows(hr, i0, rows, d, acc.data(), m.data(), l.data(), out, lse);
    }
  });
}

// One query tile of the bf16 backward: Q and dO as A operands and as B rows, lse and D.
struct QueryTileBf16 {
  std::vector<uint32_t> q_a, dout_a, q_b, dout_b;
  std::vector<float> lse, delta;
  QueryTileBf16(int64_t d)
      : q_a(kTileQ * ((d + 1) / 2)),
        dout_a(kTileQ * ((d + 1) / 2)),
        q_b(kPairsQ * d),
        dout_b(kPairsQ * d),
        lse(kTileQ),
        delta(kTileQ) {}
  // with_b: also the B operands (the dK/dV pass multiplies by Q and dO).
  void load_tile(const Dims& dm, const HeadRows& hr, const bf16_t* q, const bf16_t* g, const float* lsep,
                 const float* deltas, int64_t i0, int64_t rows, bool with_b) {
    const int64_t d = dm.d, d2 = (d + 1) / 2, first = hr.q_base + i0 * hr.q_stride;
    pack_a_rows(q + first, hr.q_stride, rows, d, q_a.data(), d2);
    pack_a_rows(g + first, hr.q_stride, rows, d, dout_a.data(), d2);
    if (with_b) {
      pack_b_rows(q + first, hr.q_stride, rows, d, q_b.data(), d);
      pack_b_rows(g + first, hr.q_stride, rows, d, dout_b.data(), d);
    }
    std::copy_n(lsep + hr.lse_base + i0, rows, lse.begin());
    std::copy_n(deltas + hr.lse_base + i0, rows, delta.begin());
  }
};

// One key tile of the bf16 backward: K and V as B operands (transposed for the scores), K as B rows.
struct KeyTileBf16 {
  std::vector<uint32_t> k_t, v_t, k_rows;
  KeyTileBf16(int64_t d) : k_t(((d + 1) / 2) * kTileK), v_t(((d + 1) / 2) * kTileK), k_rows(kPairsK * d) {}
  void load_tile(const HeadRows& hr, const bf16_t* k, const bf16_t* v, int64_t j0, int64_t cols, int64_t d,
                 bool with_rows) {
    const int64_t first = hr.k_base + j0 * hr.k_stride;
    pack_b_transposed(k + first, hr.k_stride, cols, d, k_t.data(), kTileK);
    pack_b_transposed(v + first, hr.k_stride, cols, d, v_t.data(), kTileK);
    if (with_rows) pack_b_rows(k + first, hr.k_stride, cols, d, k_rows.data(), d);
  }
};

// s <- P and dp <- dS for a query tile against a key tile.
void recompute_ds_bf16(const Dims& dm, const QueryTileBf16& qt, const KeyTileBf16& kt, int64_t i0, int64_t j0,
                       int64_t rows, int64_t cols, float scale, float* s, float* dp) {
  const int64_t d2 = (dm.d + 1) / 2;
  bf16_tile_gemm(rows, cols, d2, qt.q_a.data(), d2, kt.k_t.data(), kTileK, scale, false, s, kTileK);
  apply_causal_mask(dm, i0, j0, rows, cols, s);
  probabilities(qt.lse.data(), rows, cols, s);
  bf16_tile_gemm(rows, cols, d2, qt.dout_a.data(), d2, kt.v_t.data(), kTileK, 1.0f, false, dp, kTileK);
  softmax_grad(rows, cols, s, qt.delta.data(), dp);
}

void backward_bf16(const Dims& dm, const bf16_t* g, const bf16_t* q, const bf16_t* k, const bf16_t* v,
                   const bf16_t* out, const float* lse, float scale, bf16_t* gq, bf16_t* gk, bf16_t* gv) {
  const int64_t d = dm.d;
  const std::vector<float> deltas = row_deltas(dm, g, out);
  // Pass 1: dK, dV per (batch, kv head, key tile), summed over the query heads of the group.
  const int64_t ktiles = dm.k_tiles();
  parallel_for(dm.batch * dm.hkv * ktiles, Dims::grain(kTileK * dm.tq * dm.group * d), [&](int64_t begin, int64_t end) {
    QueryTileBf16 qt(d);
    KeyTileBf16 kt(d);
    std::vector<uint32_t> pt(kTileK * kPairsQ);
    std::vector<float> dk(kTileK * d), dv(kTileK * d), s(kTileQ * kTileK), dp(kTileQ * kTileK);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / ktiles, b = bh / dm.hkv, hk = bh % dm.hkv;
      const int64_t j0 = tile_of(task % ktiles, ktiles, dm.causal) * kTileK;
      const int64_t cols = std::min(kTileK, dm.tk - j0);
      const HeadRows kr = head_rows(dm, b, hk * dm.group);
      kt.load_tile(kr, k, v, j0, cols, d, false);
      std::fill(dk.begin(), dk.end(), 0.0f);
      std::fill(dv.begin(), dv.end(), 0.0f);
      for (int64_t h = hk * dm.group; h < (hk + 1) * dm.group; ++h) {
        const HeadRows hr = head_rows(dm, b, h);
        for (int64_t i0 = dm.query_begin(j0); i0 < dm.tq; i0 += kTileQ) {
          const int64_t rows = std::min(kTileQ, dm.tq - i0), rows2 = (rows + 1) / 2;
          qt.load_tile(dm, hr, q, g, lse, deltas.data(), i0, rows, true);
          recompute_ds_bf16(dm, qt, kt, i0, j0, rows, cols, scale, s.data(), dp.data());
          pack_a_rounded_transposed(s.data(), kTileK, rows, cols, pt.data(), kPairsQ);  // P^T
          bf16_tile_gemm(cols, d, rows2, pt.data(), kPairsQ, qt.dout_b.data(), d, 1.0f, true, dv.data(), d);
          pack_a_rounded_transposed(dp.data(), kTileK, rows, cols, pt.data(), kPairsQ);  // dS^T
          bf16_tile_gemm(cols, d, rows2, pt.data(), kPairsQ, qt.q_b.data(), d, scale, true, dk.data(), d);
        }
      }
      store_key_grads(kr, j0, cols, d, dk.data(), dv.data(), gk, gv);
    }
  });
  // Pass 2: dQ per (batch, query head, query tile).
  const int64_t qtiles = dm.q_tiles();
  parallel_for(dm.batch * dm.hq * qtiles, Dims::grain(kTileQ * dm.tk * d), [&](int64_t begin, int64_t end) {
    QueryTileBf16 qt(d);
    KeyTileBf16 kt(d);
    std::vector<uint32_t> dsa(kTileQ * kPairsK);
    std::vector<float> dq(kTileQ * d), s(kTileQ * kTileK), dp(kTileQ * kTileK);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / qtiles, b = bh / dm.hq, h = bh % dm.hq;
      const int64_t i0 = tile_of(task % qtiles, qtiles, dm.causal) * kTileQ, rows = std::min(kTileQ, dm.tq - i0);
      const HeadRows hr = head_rows(dm, b, h);
      qt.load_tile(dm, hr, q, g, lse, deltas.data(), i0, rows, false);
      std::fill(dq.begin(), dq.end(), 0.0f);
      const int64_t key_end = dm.key_end(i0 + rows);
      for (int64_t j0 = 0; j0 < key_end; j0 += kTileK) {
        const int64_t cols = std::min(kTileK, key_end - j0);
        kt.load_tile(hr, k, v, j0, cols, d, true);
        recompute_ds_bf16(dm, qt, kt, i0, j0, rows, cols, scale, s.data(), dp.data());
        pack_a_rounded(dp.data(), kTileK, rows, cols, dsa.data(), kPairsK);
        bf16_tile_gemm(rows, d, (cols + 1) / 2, dsa.data(), kPairsK, kt.k_rows.data(), d, scale, true, dq.data(), d);
      }
      store_query_grads(hr, i0, rows, d, dq.data(), gq);
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
    if constexpr (std::is_same_v<T, bf16_t>) {
      if (bf16_tile_gemm_native())
        return forward_bf16(dm, ptr<T>(q), ptr<T>(k), ptr<T>(v), static_cast<A>(scale), ptr<T>(out), ptr<A>(lse));
    }
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
    if constexpr (std::is_same_v<T, bf16_t>) {
      if (bf16_tile_gemm_native())
        return backward_bf16(dm, ptr<T>(grad_out), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(out), ptr<A>(lse),
                             static_cast<A>(scale), ptr<T>(grad_q), ptr<T>(grad_k), ptr<T>(grad_v));
    }
    backward_impl<T>(dm, ptr<T>(grad_out), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(out), ptr<A>(lse),
                     static_cast<A>(scale), ptr<T>(grad_q), ptr<T>(grad_k), ptr<T>(grad_v));
  });
}

}  // namespace qtune::cpu
