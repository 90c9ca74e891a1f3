// NF4 quantize and dequantize over the scalar numerics of engine/numerics/nf4.h; OpenMP splits the blocks.
// The code search: with AVX-512, a branch-free bracketing search over the table held in one register
// (below); elsewhere the 16-way scalar search of nf4_nearest_code.
#include <algorithm>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "engine/numerics/nf4.h"

namespace qtune::cpu {
namespace {

using namespace numerics;
constexpr int64_t kBlock = kNF4BlockSize;

template <class D>
struct Table {
  float v[16];
  Table() {
    for (int c = 0; c < 16; ++c) v[c] = nf4_code_value<D>(c);
  }
};

// best[i] = nf4_nearest_code<D>(x[i]) for a block of kBlock values x in [-1, 1] (or NaN).
#if defined(__AVX512F__)
// Exact without trying all 16 codes: rounding is monotone, and the table's spacing (>= 0.0796) exceeds
// twice D's rounding error on differences up to 2 (bf16: 2^-7), so |x - t| in D grows strictly with
// each code farther from x on either side. The nearest code is therefore x's lower neighbour lo (the
// largest t_lo <= x, found by a 4-step binary search of the sorted table) or lo + 1, ties to lo. NaN
// passes no comparison: lo = 0 and both differences NaN, code 0, as the scalar search gives.
inline __m512 round_to_vec_bf16(__m512 v) {
  // f32_to_bf16_bits without its NaN branch: a NaN difference loses every comparison whatever its bits.
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

template <class D>
__m512 abs_diff(__m512 x, __m512 t) {
  __m512 d = _mm512_sub_ps(x, t);
  if constexpr (std::is_same_v<D, bf16_t>) d = round_to_vec_bf16(d);
  return _mm512_abs_ps(d);
}

template <class D>
void nearest_codes(const float* x, const float* table, uint8_t* best) {
  const __m512 t = _mm512_loadu_ps(table);
  const __m512i fifteen = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
  for (int64_t i = 0; i < kBlock; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    __m512i lo = _mm512_setzero_si512();
    for (const int step : {8, 4, 2, 1}) {
      const __m512i cand = _mm512_add_epi32(lo, _mm512_set1_epi32(step));
      lo = _mm512_mask_mov_epi32(lo, _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(cand, t), _CMP_GE_OQ), cand);
    }
    const __m512i hi = _mm512_min_epi32(_mm512_add_epi32(lo, one), fifteen);
    const __mmask16 take_hi = _mm512_cmp_ps_mask(abs_diff<D>(v, _mm512_permutexvar_ps(hi, t)),
                                                 abs_diff<D>(v, _mm512_permutexvar_ps(lo, t)), _CMP_LT_OQ);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(best + i),
                     _mm512_cvtepi32_epi8(_mm512_mask_mov_epi32(lo, take_hi, hi)));
  }
}
#else
template <class D>
void nearest_codes(const float* x, const float* table, uint8_t* best) {
  for (int64_t i = 0; i < kBlock; ++i) best[i] = nf4_nearest_code<D>(x[i], table);
}
#endif

// max |w| over a block, NaNs skipped (std::max(amax, NaN) keeps amax). The maximum is exact in any order, so
// it runs in 16 lanes (a loop GCC vectorizes; the scalar std::max chain it does not).
template <class D>
float block_absmax(const D* src, int64_t len) {
  float lane[16] = {};
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    for (int64_t j = 0; j < 16; ++j) {
      const float a = fabsf(static_cast<float>(load(src + i + j)));
      lane[j] = a > lane[j] ? a : lane[j];
    }
  for (; i < len; ++i) lane[0] = std::max(lane[0], fabsf(static_cast<float>(load(src + i))));
  float amax = 0.0f;
  for (const float m : lane) amax = std::max(amax, m);
  return amax;
}

// Codes and the absmax of each block, one block at a time; the last block reads its real elements only.
template <class D>
void encode(const D* w, int64_t n, uint8_t* codes, float* absmax) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const Table<D> table;
  parallel_for(blocks, 64, [&](int64_t begin, int64_t end) {
    float x[kBlock];
    uint8_t best[kBlock];
    for (int64_t b = begin; b < end; ++b) {
      const int64_t len = std::min(kBlock, n - b * kBlock);
      const D* src = w + b * kBlock;
      const float amax = block_absmax(src, len);
      absmax[b] = amax;
      for (int64_t i = 0; i < kBlock; ++i) {
        const float v = i < len ? static_cast<float>(load(src + i)) : 0.0f;
        x[i] = amax == 0.0f ? 0.0f : round_to<D>(v / amax);  // a zero block: all codes 7 (see nf4.h)
      }
      nearest_codes<D>(x, table.v, best);
      uint8_t* dst = codes + b * (kBlock / 2);
      for (int64_t i = 0; i < kBlock / 2; ++i) dst[i] = nf4_pack(best[2 * i], best[2 * i + 1]);
    }
  });
}

// Double quantization of the centred absmaxes, one scaler block at a time.
template <class D>
void double_quantize(const float* absmax, int64_t blocks, float mean, int8_t* scalers, D* factors) {
  const int64_t scaler_blocks = (blocks + kNF4ScalerBlockSize - 1) / kNF4ScalerBlockSize;
  parallel_for(scaler_blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t sb = begin; sb < end; ++sb) {
      const int64_t first = sb * kNF4ScalerBlockSize, last = std::min(blocks, first + kNF4ScalerBlockSize);
      float max_abs = 0.0f;
      for (int64_t b = first; b < last; ++b) max_abs = std::max(max_abs, fabsf(round_to<D>(absmax[b] - mean)));
      const float factor = nf4_scaler_factor<D>(max_abs);
      store(factors + sb, factor);
      for (int64_t b = first; b < last; ++b) scalers[b] = nf4_quantize_scaler<D>(round_to<D>(absmax[b] - mean), factor);
    }
  });
}

// dst[i] = values[code i] for the kBlock codes packed in src (element 2i in the high nibble of src[i]).
// AVX-512: the 16 values sit in one register and vpermps / vpermw look up 16 or 32 weights at a time;
// each index lane holds its byte shifted so that the wanted nibble is in the low bits the permute reads.
template <class T>
void expand_block(const uint8_t* src, const T* values, T* dst) {
#if defined(__AVX512BW__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 table = _mm512_load_ps(values);
    const __m512i shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    for (int64_t j = 0; j < kBlock / 16; ++j) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 8 * j));
      const __m512i idx = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shifts);
      _mm512_storeu_ps(dst + 16 * j, _mm512_permutexvar_ps(idx, table));
    }
    return;
  }
  if constexpr (sizeof(T) == 2) {
    // vpermw reads 5 index bits: the table is repeated in both halves, so a low-nibble lane's bit 4 (the
    // byte's high nibble) does not matter.
    const __m512i table = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(values)));
    __m512i shifts = _mm512_setzero_si512();
    for (int l = 0; l < 32; l += 2) shifts = _mm512_mask_set1_epi16(shifts, __mmask32{1} << l, 4);
    for (int64_t j = 0; j < kBlock / 32; ++j) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16 * j));
      const __m256i pairs = _mm256_set_m128i(_mm_unpackhi_epi8(b, b), _mm_unpacklo_epi8(b, b));
      const __m512i idx = _mm512_srlv_epi16(_mm512_cvtepu8_epi16(pairs), shifts);
      _mm512_storeu_si512(dst + 32 * j, _mm512_permutexvar_epi16(idx, table));
    }
    return;
  }
#endif
  for (int64_t i = 0; i < kBlock / 2; ++i) {
    dst[2 * i] = values[src[i] >> 4];
    dst[2 * i + 1] = values[src[i] & 0x0f];
  }
}

template <class D, class T>
void dequantize(const uint8_t* codes, const int8_t* scalers, const D* factors, float mean, int64_t first, int64_t count,
                T* out) {
  const Table<D> table;
  const int64_t end_elem = first + count;
  const int64_t b_begin = first / kBlock, b_end = (end_elem + kBlock - 1) / kBlock;
  parallel_for(b_end - b_begin, 64, [&](int64_t begin, int64_t end) {
    for (int64_t b = b_begin + begin; b < b_begin + end; ++b) {
      const float scale =
          nf4_block_scale<D>(scalers[b], static_cast<float>(load(factors + b / kNF4ScalerBlockSize)), mean);
      const int64_t lo = std::max(first, b * kBlock), hi = std::min(end_elem, (b + 1) * kBlock);
      if (lo == b * kBlock && hi == lo + kBlock) {
        // A whole block: the 16 values its codes can take, each through the scalar formula once, then a lookup
        // per weight.
        alignas(64) T values[16];
        for (int c = 0; c < 16; ++c)
          store(values + c, nf4_dequantize_value<D>(static_cast<uint8_t>(c), scale, table.v));
        expand_block(codes + b * (kBlock / 2), values, out + (lo - first));
      } else {
        for (int64_t i = lo; i < hi; ++i)
          store(out + (i - first), nf4_dequantize_value<D>(nf4_code_at(codes, i), scale, table.v));
      }
    }
  });
}

template <class F>
void dispatch_nf4(DType t, const char* kernel, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::bf16) return f(bf16_t{});
  QTUNE_FAIL(kernel, ": NF4 quantizes f32 or bf16 weights, got ", dtype_name(t), " (cast the weight first)");
}

}  // namespace

void CpuBackend::nf4_quantize(const Tensor& w, const Tensor& codes, const Tensor& scalers, const Tensor& factors,
                              const Tensor& mean) {
  check_contiguous("nf4_quantize", w, "w");
  QTUNE_CHECK(w.numel() > 0, "nf4_quantize: the weight is empty");
  QTUNE_CHECK(factors.defined() && factors.dtype() == w.dtype(), "nf4_quantize: factors must have the weight's dtype ",
              dtype_name(w.dtype()));
  check_nf4_parts("nf4_quantize", w.numel(), codes, scalers, factors, mean);
  dispatch_nf4(w.dtype(), "nf4_quantize", [&](auto tag) {
    using D = decltype(tag);
    const int64_t blocks = scalers.numel();
    std::vector<float> absmax(static_cast<size_t>(blocks));
    encode<D>(ptr<D>(w), w.numel(), ptr<uint8_t>(codes), absmax.data());
    const float m = nf4_absmax_mean<D>(absmax.data(), blocks);
    store(ptr<D>(mean), m);
    double_quantize<D>(absmax.data(), blocks, m, ptr<int8_t>(scalers), ptr<D>(factors));
  });
}

void CpuBackend::nf4_encode(const Tensor& w, const Tensor& codes, const Tensor& absmax) {
  check_contiguous("nf4_encode", w, "w");
  QTUNE_CHECK(w.numel() > 0, "nf4_encode: the weight is empty");
  const int64_t blocks = (w.numel() + kBlock - 1) / kBlock;
  QTUNE_CHECK(codes.is_contiguous() && codes.dtype() == DType::u8 && codes.numel() == blocks * (kBlock / 2),
              "nf4_encode: codes must be contiguous u8 [", blocks * (kBlock / 2), "] for ", w.numel(), " weights");
  QTUNE_CHECK(absmax.is_contiguous() && absmax.dtype() == DType::f32 && absmax.numel() == blocks,
              "nf4_encode: absmax must be contiguous f32 [", blocks, "] for ", w.numel(), " weights");
  dispatch_nf4(w.dtype(), "nf4_encode", [&](auto tag) {
    using D = decltype(tag);
    encode<D>(ptr<D>(w), w.numel(), ptr<uint8_t>(codes), ptr<float>(absmax));
  });
}

void CpuBackend::nf4_double_quantize(const Tensor& absmax, const Tensor& mean, const Tensor& scalers,
                                     const Tensor& factors) {
  check_contiguous("nf4_double_quantize", absmax, "absmax");
  QTUNE_CHECK(absmax.dtype() == DType::f32 && absmax.numel() > 0,
              "nf4_double_quantize: absmax must be non-empty f32, got ", dtype_name(absmax.dtype()), " ",
              shape_str(absmax.shape()));
  const int64_t blocks = absmax.numel();
  check_nf4_parts("nf4_double_quantize", blocks * kBlock, Tensor::reserved({blocks * (kBlock / 2)}, DType::u8), scalers,
                  factors, mean);
  dispatch_nf4(mean.dtype(), "nf4_double_quantize", [&](auto tag) {
    using D = decltype(tag);
    double_quantize<D>(ptr<float>(absmax), blocks, static_cast<float>(load(ptr<D>(mean))), ptr<int8_t>(scalers),
                       ptr<D>(factors));
  });
}

void CpuBackend::nf4_dequantize(const Tensor& codes, const Tensor& scalers, const Tensor& factors, const Tensor& mean,
                                int64_t first, const Tensor& out) {
  check_contiguous("nf4_dequantize", out, "out");
  const int64_t blocks = scalers.numel();
  QTUNE_CHECK(first >= 0 && first + out.numel() <= blocks * kBlock, "nf4_dequantize: elements [", first, ", ",
              first + out.numel(), ") lie outside the ", blocks * kBlock, " stored ones");
  check_nf4_parts("nf4_dequantize", blocks * kBlock, codes, scalers, factors, mean);
  dispatch_nf4(factors.dtype(), "nf4_dequantize", [&](auto dtag) {
    using D = decltype(dtag);
    const float m = static_cast<float>(load(ptr<D>(mean)));
    dispatch_float(out.dtype(), "nf4_dequantize", [&](auto otag) {
      using T = decltype(otag);
      dequantize<D, T>(ptr<uint8_t>(codes), ptr<int8_t>(scalers), ptr<D>(factors), m, first, out.numel(), ptr<T>(out));
    });
  });
}

}  // namespace qtune::cpu
