// NF4 quantize and dequantize over the scalar numerics of engine/numerics/nf4.h, so a GPU quantization
// is the CPU's to the bit. Quantize runs four small kernels in order on the device stream: absmax and
// codes per 64-block, the absmax sums per fixed chunk (the CPU's order), their mean, and the double
// quantization per scaler block. No host synchronization.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/nf4.h"

namespace qtune::gpu {
namespace {

using namespace numerics;
constexpr int64_t kBlock = kNF4BlockSize;

// One thread per 64-block: its absmax and its 32 code bytes.
template <class D>
__global__ void nf4_codes_kernel(const D* w, int64_t n, int64_t blocks, uint8_t* codes, float* absmax) {
  float table[16];
  for (int c = 0; c < 16; ++c) table[c] = nf4_code_value<D>(c);
  for (int64_t b = thread_index(); b < blocks; b += thread_count()) {
    const int64_t begin = b * kBlock, len = n - begin < kBlock ? n - begin : kBlock;
    float amax = 0.0f;
    for (int64_t i = 0; i < len; ++i) amax = fmaxf(amax, fabsf(static_cast<float>(load(w + begin + i))));
    absmax[b] = amax;
    for (int64_t i = 0; i < kBlock; i += 2) {
      const float a = i < len ? static_cast<float>(load(w + begin + i)) : 0.0f;
      const float c = i + 1 < len ? static_cast<float>(load(w + begin + i + 1)) : 0.0f;
      codes[b * (kBlock / 2) + i / 2] =
          nf4_pack(nf4_quantize_value<D>(a, amax, table), nf4_quantize_value<D>(c, amax, table));
    }
  }
}

// One thread per chunk of kNF4MeanChunk absmaxes, summed in order in f64 (as the CPU does).
__global__ void nf4_chunk_sums(const float* absmax, int64_t blocks, double* partial, int64_t chunks) {
  for (int64_t c = thread_index(); c < chunks; c += thread_count()) {
    const int64_t end = (c + 1) * kNF4MeanChunk < blocks ? (c + 1) * kNF4MeanChunk : blocks;
    double s = 0.0;
    for (int64_t i = c * kNF4MeanChunk; i < end; ++i) s += absmax[i];
    partial[c] = s;
  }
}

template <class D>
__global__ void nf4_mean_kernel(const double* partial, int64_t chunks, int64_t blocks, D* mean) {
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c];
  store(mean, nf4_mean<D>(s, blocks));
}

// One thread per scaler block.
template <class D>
__global__ void nf4_scalers_kernel(const float* absmax, int64_t blocks, const D* mean_p, D* factors, int8_t* scalers,
                                   int64_t scaler_blocks) {
  const float mean = static_cast<float>(load(mean_p));
  for (int64_t sb = thread_index(); sb < scaler_blocks; sb += thread_count()) {
    const int64_t first = sb * kNF4ScalerBlockSize;
    const int64_t last = first + kNF4ScalerBlockSize < blocks ? first + kNF4ScalerBlockSize : blocks;
    float max_abs = 0.0f;
    for (int64_t b = first; b < last; ++b) max_abs = fmaxf(max_abs, fabsf(round_to<D>(absmax[b] - mean)));
    const float factor = nf4_scaler_factor<D>(max_abs);
    store(factors + sb, factor);
    for (int64_t b = first; b < last; ++b) scalers[b] = nf4_quantize_scaler<D>(round_to<D>(absmax[b] - mean), factor);
  }
}

// One thread per output element.
template <class D, class T>
__global__ void nf4_dequantize_kernel(const uint8_t* codes, const int8_t* scalers, const D* factors, const D* mean_p,
                                      int64_t first, int64_t count, T* out) {
  float table[16];
  for (int c = 0; c < 16; ++c) table[c] = nf4_code_value<D>(c);
  const float mean = static_cast<float>(load(mean_p));
  for (int64_t i = thread_index(); i < count; i += thread_count()) {
    const int64_t e = first + i, b = e / kBlock;
    const float scale =
        nf4_block_scale<D>(scalers[b], static_cast<float>(load(factors + b / kNF4ScalerBlockSize)), mean);
    store(out + i, nf4_dequantize_value<D>(nf4_code_at(codes, e), scale, table));
  }
}

template <class F>
void dispatch_nf4(DType t, const char* kernel, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::bf16) return f(bf16_t{});
  QTUNE_FAIL(kernel, ": NF4 quantizes f32 or bf16 weights, got ", dtype_name(t), " (cast the weight first)");
}

}  // namespace

void CudaBackend::nf4_quantize(const Tensor& w, const Tensor& codes, const Tensor& scalers, const Tensor& factors,
                               const Tensor& mean) {
  QTUNE_CHECK(w.is_contiguous() && w.numel() > 0, "nf4_quantize: w must be contiguous and non-empty (shape ",
              shape_str(w.shape()), ")");
  QTUNE_CHECK(factors.defined() && factors.dtype() == w.dtype(), "nf4_quantize: factors must have the weight's dtype ",
              dtype_name(w.dtype()));
  check_nf4_parts("nf4_quantize", w.numel(), codes, scalers, factors, mean);
  check_on_device("nf4_quantize", {&w});
  const int64_t n = w.numel(), blocks = scalers.numel(), scaler_blocks = factors.numel();
  const int64_t chunks = (blocks + kNF4MeanChunk - 1) / kNF4MeanChunk;
  // Freed at return while the kernels may still run: safe on the one stream (see squared_norm).
  const Tensor absmax = Tensor::empty({blocks}, DType::f32, device());
  const Tensor partial = Tensor::empty({chunks}, DType::f64, device());
  activate();
  dispatch_nf4(w.dtype(), "nf4_quantize", [&](auto tag) {
    using D = decltype(tag);
    float* am = static_cast<float*>(absmax.data_ptr());
    double* part = static_cast<double*>(partial.data_ptr());
    D* mean_p = static_cast<D*>(mean.data_ptr());
    launch<nf4_codes_kernel<D>>(LaunchShape{blocks_for(blocks), kThreads, 0, stream_},
                                static_cast<const D*>(w.data_ptr()), n, blocks, static_cast<uint8_t*>(codes.data_ptr()),
                                am);
    launch<nf4_chunk_sums>(LaunchShape{blocks_for(chunks), kThreads, 0, stream_}, am, blocks, part, chunks);
    launch<nf4_mean_kernel<D>>(LaunchShape{1, 1, 0, stream_}, part, chunks, blocks, mean_p);
    launch<nf4_scalers_kernel<D>>(LaunchShape{blocks_for(scaler_blocks), kThreads, 0, stream_}, am, blocks, mean_p,
                                  static_cast<D*>(factors.data_ptr()), static_cast<int8_t*>(scalers.data_ptr()),
                                  scaler_blocks);
  });
}

void CudaBackend::nf4_dequantize(const Tensor& codes, const Tensor& scalers, const Tensor& factors, const Tensor& mean,
                                 int64_t first, const Tensor& out) {
  QTUNE_CHECK(out.is_contiguous(), "nf4_dequantize: out must be contiguous (shape ", shape_str(out.shape()), ")");
  const int64_t blocks = scalers.numel(), count = out.numel();
  QTUNE_CHECK(first >= 0 && first + count <= blocks * kBlock, "nf4_dequantize: elements [", first, ", ", first + count,
              ") lie outside the ", blocks * kBlock, " stored ones");
  check_nf4_parts("nf4_dequantize", blocks * kBlock, codes, scalers, factors, mean);
  check_on_device("nf4_dequantize", {&out});
  if (count == 0) return;
  activate();
  dispatch_nf4(factors.dtype(), "nf4_dequantize", [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_float(out.dtype(), "nf4_dequantize", [&](auto otag) {
      using T = decltype(otag);
      launch<nf4_dequantize_kernel<D, T>>(
          LaunchShape{blocks_for(count), kThreads, 0, stream_}, static_cast<const uint8_t*>(codes.data_ptr()),
          static_cast<const int8_t*>(scalers.data_ptr()), static_cast<const D*>(factors.data_ptr()),
          static_cast<const D*>(mean.data_ptr()), first, count, static_cast<T*>(out.data_ptr()));
    });
  });
}

}  // namespace qtune::gpu
