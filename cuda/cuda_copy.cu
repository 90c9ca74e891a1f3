// Copies between any two dtypes and layouts, and fills. One copy kernel reads and writes through a
// runtime dtype switch (uniform across a warp, so it costs little next to the memory traffic) instead
// of instantiating every (source, destination) pair.
#include <cstring>

#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

// One element widened as the CPU copy widens it: integers (and bool) to int64, floats to double.
struct Wide {
  double f;
  int64_t i;
  bool is_int;
};

__device__ __forceinline__ Wide read_any(DType t, const void* base, int64_t idx) {
  switch (t) {
    case DType::f64:
      return {static_cast<const double*>(base)[idx], 0, false};
    case DType::f32:
      return {static_cast<const float*>(base)[idx], 0, false};
    case DType::bf16:
      return {load(static_cast<const bf16_t*>(base) + idx), 0, false};
    case DType::f16:
      return {load(static_cast<const f16_t*>(base) + idx), 0, false};
    case DType::f8_e4m3:
      return {numerics::e4m3_to_f32(static_cast<const f8_e4m3_t*>(base)[idx].bits), 0, false};
    case DType::f8_e5m2:
      return {numerics::e5m2_to_f32(static_cast<const f8_e5m2_t*>(base)[idx].bits), 0, false};
    case DType::i64:
      return {0, static_cast<const int64_t*>(base)[idx], true};
    case DType::i32:
      return {0, static_cast<const int32_t*>(base)[idx], true};
    case DType::i8:
      return {0, static_cast<const int8_t*>(base)[idx], true};
    case DType::u8:
      return {0, static_cast<const uint8_t*>(base)[idx], true};
    case DType::boolean:
      return {0, static_cast<const bool*>(base)[idx] ? 1 : 0, true};
  }
  return {0, 0, true};
}

// Narrows as the CPU copy does: floats through f32 into the 16- and 8-bit formats, float to integer
// truncating toward zero, anything to bool as != 0.
template <class V>
__device__ __forceinline__ void write_as(DType t, void* base, int64_t idx, V v) {
  switch (t) {
    case DType::f64:
      static_cast<double*>(base)[idx] = static_cast<double>(v);
      return;
    case DType::f32:
      static_cast<float*>(base)[idx] = static_cast<float>(v);
      return;
    case DType::bf16:
      store(static_cast<bf16_t*>(base) + idx, static_cast<float>(v));
      return;
    case DType::f16:
      store(static_cast<f16_t*>(base) + idx, static_cast<float>(v));
      return;
    case DType::f8_e4m3:
      static_cast<f8_e4m3_t*>(base)[idx].bits = numerics::f32_to_e4m3(static_cast<float>(v));
      return;
    case DType::f8_e5m2:
      static_cast<f8_e5m2_t*>(base)[idx].bits = numerics::f32_to_e5m2(static_cast<float>(v));
      return;
    case DType::i64:
      static_cast<int64_t*>(base)[idx] = static_cast<int64_t>(v);
      return;
    case DType::i32:
      static_cast<int32_t*>(base)[idx] = static_cast<int32_t>(v);
      return;
    case DType::i8:
      static_cast<int8_t*>(base)[idx] = static_cast<int8_t>(v);
      return;
    case DType::u8:
      static_cast<uint8_t*>(base)[idx] = static_cast<uint8_t>(v);
      return;
    case DType::boolean:
      static_cast<bool*>(base)[idx] = v != 0;
      return;
  }
}

__global__ void copy_kernel(const void* src, DType src_type, void* dst, DType dst_type, int64_t n, Indexer<2> ix) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    int64_t off[2];
    ix.offsets(i, off);
    const Wide v = read_any(src_type, src, off[0]);
    if (v.is_int)
      write_as(dst_type, dst, off[1], v.i);
    else
      write_as(dst_type, dst, off[1], v.f);
  }
}

// The stored bits of `value` as dtype t, made on the host with the same numerics the CPU fill uses.
uint64_t fill_bits(DType t, double value) {
  const int64_t integer = static_cast<int64_t>(value);
  uint64_t bits = 0;
  auto put = [&bits](auto v) { std::memcpy(&bits, &v, sizeof v); };
  switch (t) {
    case DType::f64:
      put(value);
      break;
    case DType::f32:
      put(static_cast<float>(value));
      break;
    case DType::bf16:
      put(numerics::f32_to_bf16_bits(static_cast<float>(value)));
      break;
    case DType::f16:
      put(numerics::f32_to_f16_bits(static_cast<float>(value)));
      break;
    case DType::f8_e4m3:
      put(numerics::f32_to_e4m3(static_cast<float>(value)));
      break;
    case DType::f8_e5m2:
      put(numerics::f32_to_e5m2(static_cast<float>(value)));
      break;
    case DType::i64:
      put(integer);
      break;
    case DType::i32:
      put(static_cast<int32_t>(integer));
      break;
    case DType::i8:
      put(static_cast<int8_t>(integer));
      break;
    case DType::u8:
      put(static_cast<uint8_t>(integer));
      break;
    case DType::boolean:
      // != 0 on the value itself, as the CPU casts: 0.33 is true, though it truncates to 0.
      put(static_cast<uint8_t>(value != 0.0 ? 1 : 0));
      break;
  }
  return bits;
}

template <class E, bool Contiguous>
__global__ void fill_kernel(E* dst, E pattern, int64_t n, Indexer<1> ix) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    if constexpr (Contiguous) {
      dst[i] = pattern;
    } else {
      int64_t off[1];
      ix.offsets(i, off);
      dst[off[0]] = pattern;
    }
  }
}

template <class E>
void launch_fill(const Tensor& dst, uint64_t bits, cudaStream_t stream) {
  const int64_t n = dst.numel();
  E* out = static_cast<E*>(dst.data_ptr());
  const E pattern = static_cast<E>(bits);
  const Indexer<1> ix = make_indexer<1>("fill", dst.shape(), {&dst.strides()});
  if (ix.rank <= 1 && (ix.rank == 0 || ix.strides[0][0] == 1))
    launch<fill_kernel<E, true>>(LaunchShape{blocks_for(n), kThreads, 0, stream}, out, pattern, n, ix);
  else
    launch<fill_kernel<E, false>>(LaunchShape{blocks_for(n), kThreads, 0, stream}, out, pattern, n, ix);
}

}  // namespace

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  QTUNE_CHECK(src.shape() == dst.shape(), "copy: shapes ", shape_str(src.shape()), " and ", shape_str(dst.shape()));
  QTUNE_CHECK(src.device() == dst.device(), "copy: tensors on ", src.device().str(), " and ", dst.device().str(),
              " (the CUDA copy kernel works within one device)");
  const int64_t n = dst.numel();
  if (n == 0) return;
  activate();
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.data_ptr() != dst.data_ptr())
      QTUNE_CUDA_CHECK(
          cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  const Indexer<2> ix = make_indexer<2>("copy", dst.shape(), {&src.strides(), &dst.strides()});
  launch<copy_kernel>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, src.data_ptr(), src.dtype(), dst.data_ptr(),
                      dst.dtype(), n, ix);
}

void CudaBackend::fill(const Tensor& dst, double value) {
  check_on_device("fill", {&dst});
  if (dst.numel() == 0) return;
  activate();
  const uint64_t bits = fill_bits(dst.dtype(), value);
  if (bits == 0 && dst.is_contiguous()) {
    QTUNE_CUDA_CHECK(cudaMemsetAsync(dst.data_ptr(), 0, dst.nbytes(), stream_));
    return;
  }
  switch (dst.element_size()) {
    case 1:
      launch_fill<uint8_t>(dst, bits, stream_);
      break;
    case 2:
      launch_fill<uint16_t>(dst, bits, stream_);
      break;
    case 4:
      launch_fill<uint32_t>(dst, bits, stream_);
      break;
    case 8:
      launch_fill<uint64_t>(dst, bits, stream_);
      break;
    default:
      QTUNE_FAIL("fill: unexpected element size ", dst.element_size());
  }
}

}  // namespace qtune::gpu
