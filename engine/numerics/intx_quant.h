#pragma once
// Integer fake quantization (docs/numerics.md §2): the scalar reference of every QAT scheme. The CPU kernels,
// the CUDA kernels, the converted modules and the tests all call these, so one definition fixes the bits.
//
// Template parameter T is the storage type of the quantized tensor (D in docs/numerics.md): qparams are chosen
// in D (each intermediate rounded to D, as torchao computes them on a D tensor), codes in acc_t<T>.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "engine/numerics/element.h"
#include "engine/numerics/ggml_blocks.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

enum class FakeQuantKind : uint8_t {
  intx_symmetric,    // torchao IntxFakeQuantizeConfig, symmetric (8da4w weights, embeddings)
  intx_asymmetric,   // torchao IntxFakeQuantizeConfig, asymmetric (8da4w per-token activations)
  int4_weight_only,  // torchao Int4WeightFakeQuantizer (bf16 activations): its own min/max formulas
  q4_0,              // llama.cpp Q4_0
  q8_0,              // llama.cpp Q8_0
};

// One scheme applied to groups of `group_size` consecutive elements along the last dim.
struct FakeQuantSpec {
  FakeQuantKind kind = FakeQuantKind::intx_symmetric;
  int32_t qmin = -8, qmax = 7;  // intx kinds only
  // intx kinds: the floor of the scale. Negative means "the smallest normal of D" (torchao's default).
  double eps = -1.0;
  int64_t group_size = 32;  // 0: the whole last dim (per token)
};

template <class T>
QTUNE_HD acc_t<T> round_to_dtype(acc_t<T> v) {
  if constexpr (std::is_same_v<T, bf16_t>)
    return round_to_bf16(v);
  else if constexpr (std::is_same_v<T, f16_t>)
    return round_to_f16(v);
  else
    return v;
}

template <class T>
QTUNE_HD acc_t<T> smallest_normal() {
  if constexpr (std::is_same_v<T, double>)
    return 2.2250738585072014e-308;
  else if constexpr (std::is_same_v<T, f16_t>)
    return 6.103515625e-05f;
  else
    return 1.17549435e-38f;  // f32 and bf16 share the exponent range
}

// Round half to even (torch.round) without depending on the current rounding mode.
template <class A>
QTUNE_HD A round_half_even(A v) {
  const A r = std::floor(v);
  const A diff = v - r;
  if (diff > A(0.5)) return r + A(1);
  if (diff < A(0.5)) return r;
  return std::fmod(r, A(2)) == A(0) ? r : r + A(1);
}

template <class A>
struct QParams {
  A scale;
  int32_t zero_point;
};

// Over a block whose extremes are min_v and max_v (both in D); the range always includes 0.
template <class T>
QTUNE_HD QParams<acc_t<T>> choose_qparams_symmetric(acc_t<T> min_v, acc_t<T> max_v, int32_t qmin, int32_t qmax,
                                                    acc_t<T> eps) {
  using A = acc_t<T>;
  const A min_neg = min_v < A(0) ? min_v : A(0), max_pos = max_v > A(0) ? max_v : A(0);
  const A amax = -min_neg > max_pos ? -min_neg : max_pos;
  A scale = round_to_dtype<T>(amax / (A(qmax - qmin) / A(2)));  // int4: amax / 7.5
  if (!(scale >= eps)) scale = eps;
  return {scale, 0};
}

template <class T>
QTUNE_HD QParams<acc_t<T>> choose_qparams_asymmetric(acc_t<T> min_v, acc_t<T> max_v, int32_t qmin, int32_t qmax,
                                                     acc_t<T> eps) {
  using A = acc_t<T>;
  const A min_neg = min_v < A(0) ? min_v : A(0), max_pos = max_v > A(0) ? max_v : A(0);
  A scale = round_to_dtype<T>(round_to_dtype<T>(max_pos - min_neg) / A(qmax - qmin));
  if (!(scale >= eps)) scale = eps;
  // A true division here (not the reciprocal), as torchao does.
  A zp = A(qmin) - round_half_even(round_to_dtype<T>(min_neg / scale));
  zp = zp < A(qmin) ? A(qmin) : (zp > A(qmax) ? A(qmax) : zp);
  return {scale, static_cast<int32_t>(zp)};
}

// round(x * (1/scale)) + zp, unclamped: multiply by the reciprocal and round BEFORE adding zp [exact].
template <class A>
QTUNE_HD A intx_unclamped_code(A x, A scale, int32_t zero_point) {
  const A inv = A(1) / scale;
  return round_half_even(x * inv) + A(zero_point);
}

template <class A>
QTUNE_HD int32_t intx_code(A x, A scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const A q = intx_unclamped_code(x, scale, zero_point);
  return q < A(qmin) ? qmin : (q > A(qmax) ? qmax : static_cast<int32_t>(q));
}

template <class A>
QTUNE_HD A intx_dequant(int32_t q, A scale, int32_t zero_point) {
  return A(q - zero_point) * scale;
}

// The straight-through estimator's clamp mask: the gradient passes where the code was not clamped.
template <class A>
QTUNE_HD bool intx_ste_pass(A x, A scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const A q = intx_unclamped_code(x, scale, zero_point);
  return q >= A(qmin) && q <= A(qmax);
}

// ---- int4 weight-only (torchao Int4WeightFakeQuantizer), all in f32 (f64 for f64) ----------------------
template <class A>
struct Int4WoParams {
  A min, scale, zero;  // zero = min + 8 * scale: the value code 8 dequantizes to
};

template <class A>
QTUNE_HD Int4WoParams<A> int4wo_params(A min_v, A max_v) {
  A range = max_v - min_v;
  if (!(range >= A(1e-6f))) range = A(1e-6f);  // clamp before dividing
  const A scale = range / A(15);
  return {min_v, scale, min_v + scale * A(8)};
}

template <class A>
QTUNE_HD A int4wo_unclamped_code(A w, const Int4WoParams<A>& p) {
  return round_half_even((w - p.min) / p.scale);
}

template <class A>
QTUNE_HD int32_t int4wo_code(A w, const Int4WoParams<A>& p) {
  const A q = int4wo_unclamped_code(w, p);
  return q < A(0) ? 0 : (q > A(15) ? 15 : static_cast<int32_t>(q));
}

template <class A>
QTUNE_HD A int4wo_dequant(int32_t q, const Int4WoParams<A>& p) {
  return A(q - 8) * p.scale + p.zero;
}

// ---- int4 nibble packing ----------------------------------------------------------------------------
// Two 4-bit codes per byte: element 2i in the LOW nibble, 2i+1 in the high nibble. Codes are unsigned
// 0..15 (a signed int4 code q is stored as q + 8).
QTUNE_HD uint8_t pack_nibbles(int32_t even, int32_t odd) {
  return static_cast<uint8_t>((even & 0xf) | ((odd & 0xf) << 4));
}
QTUNE_HD int32_t low_nibble(uint8_t b) { return b & 0xf; }
QTUNE_HD int32_t high_nibble(uint8_t b) { return b >> 4; }

// ---- one whole group ------------------------------------------------------------------------------
template <class A>
struct GroupExtremes {
  A min, max;
};

template <class T>
QTUNE_HD GroupExtremes<acc_t<T>> group_extremes(const T* x, int64_t n) {
  using A = acc_t<T>;
  const A first = load(x);
  GroupExtremes<A> e{first, first};
  for (int64_t i = 1; i < n; ++i) {
    const A v = load(x + i);
    e.min = v < e.min ? v : e.min;
    e.max = v > e.max ? v : e.max;
  }
  return e;
}

// The qparams of an intx spec over a block with these extremes, with the scale as stored: f32
// (scale_precision), f64 for f64.
template <class T>
QTUNE_HD QParams<acc_t<T>> intx_qparams(acc_t<T> min_v, acc_t<T> max_v, const FakeQuantSpec& spec) {
  using A = acc_t<T>;
  const A eps = spec.eps < 0 ? smallest_normal<T>() : static_cast<A>(spec.eps);
  QParams<A> p = spec.kind == FakeQuantKind::intx_symmetric
                     ? choose_qparams_symmetric<T>(min_v, max_v, spec.qmin, spec.qmax, eps)
                     : choose_qparams_asymmetric<T>(min_v, max_v, spec.qmin, spec.qmax, eps);
  if constexpr (!std::is_same_v<A, double>) p.scale = static_cast<float>(p.scale);
  return p;
}

// The same over x[0..n).
template <class T>
QTUNE_HD QParams<acc_t<T>> intx_group_qparams(const T* x, int64_t n, const FakeQuantSpec& spec) {
  const GroupExtremes<acc_t<T>> e = group_extremes(x, n);
  return intx_qparams<T>(e.min, e.max, spec);
}

// q4_0 / q8_0 fake quantization of one block of kGgmlBlock elements: through ggml's block codec
// (ggml_blocks.h) and back, so the values are exactly those a GGUF file of the weights dequantizes to. The
// STE mask: q4_0 clamps the largest positive codes (where x * (1/d) + 8.5 reaches 16); q8_0 never clamps.
template <class T>
QTUNE_HD void fake_quantize_ggml_block(const T* x, bool q4, T* out, uint8_t* mask) {
  float v[kGgmlBlock], back[kGgmlBlock];
  for (int64_t j = 0; j < kGgmlBlock; ++j) v[j] = static_cast<float>(load(x + j));
  if (q4) {
    BlockQ4_0 block;
    quantize_block_q4_0(v, block);
    dequantize_block_q4_0(block, back);
    if (mask) {
      const GgmlBlockScale s = q4_0_scale(ggml_signed_absmax(v));
      for (int64_t j = 0; j < kGgmlBlock; ++j) mask[j] = q4_0_ste_pass(v[j], s);
    }
  } else {
    BlockQ8_0 block;
    quantize_block_q8_0(v, block);
    dequantize_block_q8_0(block, back);
    if (mask)
      for (int64_t j = 0; j < kGgmlBlock; ++j) mask[j] = 1;
  }
  for (int64_t j = 0; j < kGgmlBlock; ++j) store(out + j, back[j]);
}

// Fake quantizes x[0..n) (one group) into out (D) and writes the STE mask (1: the gradient passes).
// out may alias x. mask may be null.
template <class T>
QTUNE_HD void fake_quantize_group(const T* x, int64_t n, const FakeQuantSpec& spec, T* out, uint8_t* mask) {
  using A = acc_t<T>;
  switch (spec.kind) {
    case FakeQuantKind::intx_symmetric:
    case FakeQuantKind::intx_asymmetric: {
      const QParams<A> p = intx_group_qparams(x, n, spec);
      for (int64_t i = 0; i < n; ++i) {
        const A v = load(x + i);
        if (mask) mask[i] = intx_ste_pass(v, p.scale, p.zero_point, spec.qmin, spec.qmax);
        store(out + i, intx_dequant(intx_code(v, p.scale, p.zero_point, spec.qmin, spec.qmax), p.scale, p.zero_point));
      }
      return;
    }
    case FakeQuantKind::int4_weight_only: {
      const GroupExtremes<A> e = group_extremes(x, n);
      const Int4WoParams<A> p = int4wo_params(e.min, e.max);
      for (int64_t i = 0; i < n; ++i) {
        const A v = load(x + i), q = int4wo_unclamped_code(v, p);
        if (mask) mask[i] = q >= A(0) && q <= A(15);
        store(out + i, int4wo_dequant(int4wo_code(v, p), p));
      }
      return;
    }
    case FakeQuantKind::q4_0:
    case FakeQuantKind::q8_0:
      for (int64_t b = 0; b < n; b += kGgmlBlock)
        fake_quantize_ggml_block(x + b, spec.kind == FakeQuantKind::q4_0, out + b, mask ? mask + b : nullptr);
      return;
  }
}

}  // namespace qtune::numerics
