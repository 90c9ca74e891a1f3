// Float8 scaling and quantization (docs/numerics.md §3) through the scalar numerics of
// engine/numerics/fp8.h and fp8_scale.h, so the CPU emulation is the GPU's function to the bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "engine/numerics/fp8.h"
#include "engine/numerics/fp8_scale.h"

namespace qtune::cpu {
namespace {

// The scale slot of element (r, c) for a [R, 1], [1, C] or [1, 1] scale.
struct ScaleIndex {
  bool per_row, per_col;
  int64_t operator()(int64_t r, int64_t c) const { return per_row ? r : (per_col ? c : 0); }
};

ScaleIndex scale_index(const Tensor& x, const Tensor& scale) {
  return {scale.size(0) == x.size(0) && scale.size(0) > 1, scale.size(1) == x.size(1) && scale.size(1) > 1};
}

template <class Fmt, class T>
void quantize_rows(const T* x, const float* scale, uint8_t* codes, ScaleIndex at, int64_t cols, int64_t begin,
                   int64_t end) {
  using A = acc_t<T>;
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const A v = static_cast<A>(load(x + r * cols + c)) * static_cast<A>(scale[at(r, c)]);
      codes[r * cols + c] = numerics::encode_fp8<Fmt>(v);
    }
  }
}

}  // namespace

void CpuBackend::fp8_scale(const Tensor& x, double fp8_max, bool pow2, const Tensor& scale) {
  check_fp8_args("fp8_scale", x, scale, Tensor());
  const int64_t rows = x.size(0), cols = x.size(1);
  const ScaleIndex at = scale_index(x, scale);
  std::vector<double> amax(static_cast<size_t>(scale.numel()), 0.0);
  dispatch_float(x.dtype(), "fp8_scale", [&](auto tag) {
    using T = decltype(tag);
    const T* in = ptr<T>(x);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const double a = std::fabs(static_cast<double>(load(in + r * cols + c)));
        double& m = amax[static_cast<size_t>(at(r, c))];
        if (a > m || std::isnan(a)) m = std::isnan(m) ? m : a;  // NaN sticks, as in torch's amax
      }
    }
  });
  float* out = ptr<float>(scale);
  for (size_t i = 0; i < amax.size(); ++i) out[i] = numerics::fp8_scale_of(amax[i], fp8_max, pow2);
}

void CpuBackend::fp8_quantize(const Tensor& x, const Tensor& scale, const Tensor& codes) {
  QTUNE_CHECK(codes.defined(), "fp8_quantize: codes are required");
  check_fp8_args("fp8_quantize", x, scale, codes);
  const int64_t rows = x.size(0), cols = x.size(1);
  const ScaleIndex at = scale_index(x, scale);
  const float* s = ptr<float>(scale);
  uint8_t* out = static_cast<uint8_t*>(codes.data_ptr());
  const bool e4m3 = codes.dtype() == DType::f8_e4m3;
  dispatch_float(x.dtype(), "fp8_quantize", [&](auto tag) {
    using T = decltype(tag);
    const T* in = ptr<T>(x);
    parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
      if (e4m3) {
        quantize_rows<numerics::E4M3>(in, s, out, at, cols, begin, end);
      } else {
        quantize_rows<numerics::E5M2>(in, s, out, at, cols, begin, end);
      }
    });
  });
}

namespace {

// codes: [R, K] fp8; scale: [1, 1] or [R, 1] -> [R, K] f32 values.
Tensor dequantize_rows(const Tensor& codes, const Tensor& scale) {
  const Tensor out = Tensor::empty(codes.shape(), DType::f32);
  const int64_t rows = codes.size(0), cols = codes.size(1);
  const uint8_t* c = static_cast<const uint8_t*>(codes.data_ptr());
  const float* s = ptr<float>(scale);
  float* o = ptr<float>(out);
  const bool e4m3 = codes.dtype() == DType::f8_e4m3, per_row = scale.size(0) > 1;
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t k = 0; k < cols; ++k)
        o[r * cols + k] = numerics::fp8_dequantize(c[r * cols + k], e4m3, s[per_row ? r : 0]);
  });
  return out;
}

}  // namespace

// Emulated: both operands dequantized to f32, then the f32 GEMM (what an fp8 GEMM with f32 accumulation
// computes, in another summation order).
void CpuBackend::fp8_gemm(const Tensor& a, const Tensor& a_scale, const Tensor& b, const Tensor& b_scale,
                          const Tensor& out) {
  check_fp8_gemm_args(a, a_scale, b, b_scale, out);
  const int64_t m = a.size(0), n = b.size(0), k = a.size(1);
  const Tensor product = out.dtype() == DType::f32 ? out : Tensor::empty(out.shape(), DType::f32);
  gemm(dequantize_rows(a, a_scale).view({1, m, k}), false, dequantize_rows(b, b_scale).view({1, n, k}), true,
       product.view({1, m, n}), 1.0, 0.0);
  if (product.data_ptr() != out.data_ptr()) copy(product, out);
}

}  // namespace qtune::cpu
