// DeviceCollectives over NCCL (engine/device_collectives.h): the CUDA backend's side of dist::NcclCommunicator.
// Every call is queued on the device's one stream, so collectives order with the kernels around them.
#include <nccl.h>

#include <cstring>
#include <memory>
#include <string>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"

namespace qtune::gpu {
namespace {

void check_nccl(ncclResult_t result, const char* call, ncclComm_t comm) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  // NCCL keeps the last error's text per thread: also for a call that made no communicator (comm null).
  const char* detail = ncclGetLastError(comm);
  const bool said = detail != nullptr && detail[0] != '\0';
  QTUNE_FAIL(call, " failed: ", ncclGetErrorString(result), said ? " (" : "", said ? detail : "", said ? ")" : "");
}

ncclDataType_t nccl_type(DType dtype, bool reduced) {
  switch (dtype) {
    case DType::f64:
      return ncclFloat64;
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::f16:
      return ncclFloat16;
    case DType::i64:
      return ncclInt64;
    case DType::i32:
      return ncclInt32;
    case DType::i8:
      return ncclInt8;
    default:
      // fp8, u8 and bool move as bytes; NCCL cannot add them here.
      QTUNE_CHECK(!reduced, "NCCL reductions take f64, f32, bf16, f16 or integer elements, not ", dtype_name(dtype));
      return ncclUint8;
  }
}

class EventMarker final : public DeviceCollectives::Marker {
 public:
  EventMarker(const CudaBackend& backend) : backend_(backend) {
    backend_.activate();
    QTUNE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    QTUNE_CUDA_CHECK(cudaEventRecord(event_, backend_.stream()));
  }
  ~EventMarker() override { cudaEventDestroy(event_); }
  bool done() override {
    backend_.activate();
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    QTUNE_CUDA_CHECK(status);
    return true;
  }

 private:
  const CudaBackend& backend_;
  cudaEvent_t event_ = nullptr;
};

class NcclCollectives final : public DeviceCollectives {
 public:
  NcclCollectives(const CudaBackend& backend, ncclComm_t comm, int rank, int size)
      : backend_(backend), comm_(comm), rank_(rank), size_(size) {}
  ~NcclCollectives() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_gather(const void* send, void* recv, int64_t count, DType dtype) override {
    const ncclDataType_t type = nccl_type(dtype, false);
    const size_t n = static_cast<size_t>(count) * (type == ncclUint8 ? dtype_size(dtype) : 1);
    check_nccl(ncclAllGather(send, recv, n, type, live(), backend_.stream()), "ncclAllGather", comm_);
  }
  void reduce_scatter(const void* send, void* recv, int64_t count, DType dtype, bool max) override {
    check_nccl(ncclReduceScatter(send, recv, static_cast<size_t>(count), nccl_type(dtype, true),
                                 max ? ncclMax : ncclSum, live(), backend_.stream()),
               "ncclReduceScatter", comm_);
  }
  void all_reduce(void* buffer, int64_t count, DType dtype, bool max) override {
    check_nccl(ncclAllReduce(buffer, buffer, static_cast<size_t>(count), nccl_type(dtype, true),
                             max ? ncclMax : ncclSum, live(), backend_.stream()),
               "ncclAllReduce", comm_);
  }
  void broadcast(void* buffer, int64_t count, DType dtype, int root) override {
    const ncclDataType_t type = nccl_type(dtype, false);
    const size_t n = static_cast<size_t>(count) * (type == ncclUint8 ? dtype_size(dtype) : 1);
    check_nccl(ncclBroadcast(buffer, buffer, n, type, root, live(), backend_.stream()), "ncclBroadcast", comm_);
  }
  std::unique_ptr<Marker> marker() override { return std::make_unique<EventMarker>(backend_); }
  void abort() override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  ncclComm_t live() const {
    QTUNE_CHECK(comm_ != nullptr, "NCCL collective after the group was aborted");
    backend_.activate();
    return comm_;
  }
  const CudaBackend& backend_;
  ncclComm_t comm_;
  int rank_, size_;
};

}  // namespace

std::string CudaBackend::new_collectives_id() {
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId", nullptr);
  return std::string(id.internal, sizeof(id.internal));
}

std::unique_ptr<DeviceCollectives> CudaBackend::join_collectives(const std::string& id, int rank, int size) {
  ncclUniqueId unique;
  QTUNE_CHECK(id.size() == sizeof(unique.internal), "join_collectives: a group id is ", sizeof(unique.internal),
              " bytes (from new_collectives_id), got ", id.size());
  std::memcpy(unique.internal, id.data(), id.size());
  QTUNE_CHECK(size >= 1 && rank >= 0 && rank < size, "join_collectives: rank ", rank, " of ", size);
  activate();
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, size, unique, rank), "ncclCommInitRank", nullptr);
  return std::make_unique<NcclCollectives>(*this, comm, rank, size);
}

}  // namespace qtune::gpu
