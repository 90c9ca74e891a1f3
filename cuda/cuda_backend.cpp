// Device discovery, the per-device backend registry, the stream and host transfers.
#include "cuda/cuda_backend.h"

#include <mutex>
#include <vector>

#include "cuda/cublaslt_gemm.h"
#include "cuda/cuda_check.h"
#include "engine/backend_registry.h"

namespace qtune {
namespace {

struct DeviceProbe {
  int count = 0;
  std::string error;  // why count is 0, when the runtime said
};

// Asked once: the answer cannot change within a process, and without a driver every query costs a
// failed driver load.
const DeviceProbe& probe() {
  static const DeviceProbe result = [] {
    DeviceProbe p;
    const cudaError_t status = cudaGetDeviceCount(&p.count);
    if (status != cudaSuccess) {
      // Without a GPU or driver the runtime reports an error rather than zero devices.
      p.count = 0;
      p.error = cudaGetErrorString(status);
      (void)cudaGetLastError();
    }
    return p;
  }();
  return result;
}

Backend& cuda_backend(int index) {
  const DeviceProbe& p = probe();
  QTUNE_CHECK(p.count > 0, "device cuda:", index, " was asked for, but no usable CUDA device was found",
              p.error.empty() ? std::string() : " (" + p.error + ")", "; use device=cpu on this machine");
  QTUNE_CHECK(index >= 0 && index < p.count, "device cuda:", index, " was asked for, but this machine has ", p.count,
              " CUDA device(s) (cuda:0 .. cuda:", p.count - 1, ")");
  // Created on first use and never destroyed: tensors in static objects may outlive any destruction
  // order we could pick, and the CUDA runtime may already be torn down at exit.
  // The table itself is never destroyed either, so the backends stay reachable to the end.
  static std::mutex mutex;
  static auto* backends = new std::vector<gpu::CudaBackend*>(static_cast<size_t>(p.count), nullptr);
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*backends)[static_cast<size_t>(index)];
  if (slot == nullptr) slot = new gpu::CudaBackend(index);
  return *slot;
}

const bool registered = register_backend(DeviceType::cuda, {[] { return probe().count; }, cuda_backend});

}  // namespace

namespace gpu {

CudaBackend::CudaBackend(int index) : index_(index), name_("cuda:" + std::to_string(index)), allocator_(index) {
  activate();
  QTUNE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<LtGemm>(index);
}

CudaBackend::~CudaBackend() = default;

void CudaBackend::activate() const { QTUNE_CUDA_CHECK(cudaSetDevice(index_)); }

void CudaBackend::synchronize() {
  activate();
  QTUNE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_from_host(const void* src, const Tensor& dst) {
  QTUNE_CHECK(dst.is_contiguous(), "copy_from_host: dst must be contiguous (shape ", shape_str(dst.shape()), ")");
  check_on_device("copy_from_host", {&dst});
  if (dst.nbytes() == 0) return;
  activate();
  if (staging_.upload(dst.data_ptr(), src, dst.nbytes(), stream_)) return;
  // Too large to stage (loading weights): the caller may free or reuse its buffer as soon as we return.
  QTUNE_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
  QTUNE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(const Tensor& src, void* dst) {
  QTUNE_CHECK(src.is_contiguous(), "copy_to_host: src must be contiguous (shape ", shape_str(src.shape()), ")");
  check_on_device("copy_to_host", {&src});
  if (src.nbytes() == 0) return;
  activate();
  QTUNE_CUDA_CHECK(cudaMemcpyAsync(dst, src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  QTUNE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
                       double beta) {
  check_on_device("gemm", {&a, &b, &c});
  GemmProblem p = check_gemm(a, trans_a, b, trans_b, c);
  p.tf32 = tf32_ && p.dtype == DType::f32;
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (p.k == 0) {
    // cuBLASLt rejects an empty reduction; the product is zero, so only beta * c remains.
    if (beta == 0.0)
      fill(c, 0.0);
    else
      affine(c, beta, 0.0, c);
    return;
  }
  activate();
  gemm_->run(p, a.data_ptr(), b.data_ptr(), c.data_ptr(), alpha, beta, stream_);
}

}  // namespace gpu
}  // namespace qtune

// Referenced by the linker option qtune's CMake target carries in CUDA builds, so that a static libqtune
// keeps this object (and with it the registration above) in every program.
extern "C" const bool* qtune_cuda_backend_anchor() { return &qtune::registered; }
