// Copies (with casts between every pair of dtypes), fills and host transfers.
#include <array>
#include <cstring>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {
namespace {

// The value of one stored element, widened: integers to int64, floats to double.
template <class T>
inline auto widen(const T* p) {
  if constexpr (std::is_same_v<T, f8_e4m3_t>)
    return static_cast<double>(numerics::e4m3_to_f32(p->bits));
  else if constexpr (std::is_same_v<T, f8_e5m2_t>)
    return static_cast<double>(numerics::e5m2_to_f32(p->bits));
  else if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>)
    return static_cast<double>(load(p));
  else if constexpr (std::is_same_v<T, bool>)
    return static_cast<int64_t>(*p ? 1 : 0);
  else if constexpr (std::is_integral_v<T>)
    return static_cast<int64_t>(*p);
  else
    return static_cast<double>(*p);
}

// Stores a widened value as T. Floats narrow through f32 (as PyTorch's casts do); float to integer
// truncates toward zero.
template <class T, class V>
inline void narrow_store(T* p, V v) {
  if constexpr (std::is_same_v<T, f8_e4m3_t>)
    p->bits = numerics::f32_to_e4m3(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f8_e5m2_t>)
    p->bits = numerics::f32_to_e5m2(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>)
    store(p, static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>)
    *p = v != 0;
  else
    *p = static_cast<T>(v);
}

// The value of element i of a contiguous source, as widen() gives it. fp8 decodes through a table built
// from the scalar reference once (its ldexp per element made casting a float8 weight the slowest step of
// a float8 LoRA step), so the values are the reference's.
template <class T>
inline auto element(const T* base, int64_t i) {
  if constexpr (std::is_same_v<T, f8_e4m3_t> || std::is_same_v<T, f8_e5m2_t>) {
    static const std::array<float, 256> table = [] {
      std::array<float, 256> t{};
      for (int c = 0; c < 256; ++c) {
        const T code{static_cast<uint8_t>(c)};
        t[size_t(c)] = static_cast<float>(widen(&code));
      }
      return t;
    }();
    return static_cast<double>(table[base[i].bits]);
  } else {
    return widen(base + i);
  }
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  QTUNE_CHECK(src.shape() == dst.shape(), "copy: shapes ", shape_str(src.shape()), " and ", shape_str(dst.shape()));
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.data_ptr() != dst.data_ptr()) std::memmove(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  dispatch_any(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_any(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      const S* in = ptr<S>(src);
      D* out = ptr<D>(dst);
      if (src.is_contiguous() && dst.is_contiguous()) {  // a cast: flat, across threads
        parallel_for(dst.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) narrow_store(out + i, element(in, i));
        });
        return;
      }
      for_each_run<2>(dst.shape(), {src.strides(), dst.strides()}, [&](auto off, int64_t n, auto inner) {
        const S* a = in + off[0];
        D* b = out + off[1];
        for (int64_t i = 0; i < n; ++i) narrow_store(b + i * inner[1], widen(a + i * inner[0]));
      });
    });
  });
}

void CpuBackend::copy_from_host(const void* src, const Tensor& dst) {
  check_contiguous("copy_from_host", dst, "dst");
  std::memcpy(dst.data_ptr(), src, dst.nbytes());
}

void CpuBackend::copy_to_host(const Tensor& src, void* dst) {
  check_contiguous("copy_to_host", src, "src");
  std::memcpy(dst, src.data_ptr(), src.nbytes());
}

void CpuBackend::fill(const Tensor& dst, double value) {
  dispatch_any(dst.dtype(), [&](auto d) {
    using D = decltype(d);
    D one;
    // Any non-zero value, a fraction or NaN included, is true (torch.full); the int64 detour
    // below would truncate 0.7 to false first.
    if constexpr (std::is_same_v<D, bool>)
      one = value != 0;
    else if constexpr (std::is_integral_v<D>)
      narrow_store(&one, static_cast<int64_t>(value));
    else
      narrow_store(&one, value);
    D* out = ptr<D>(dst);
    for_each_run<1>(dst.shape(), {dst.strides()}, [&](auto off, int64_t n, auto inner) {
      for (int64_t i = 0; i < n; ++i) out[off[0] + i * inner[0]] = one;
    });
  });
}

}  // namespace qtune::cpu
