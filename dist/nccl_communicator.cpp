#include "dist/nccl_communicator.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace qtune::dist {
namespace {

using Clock = std::chrono::steady_clock;

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<DeviceCollectives> group, std::unique_ptr<DeviceCollectives::Marker> marker,
           std::string what, int rank, std::chrono::milliseconds timeout)
      : group_(std::move(group)), marker_(std::move(marker)), what_(std::move(what)), rank_(rank), timeout_(timeout) {}

  void wait() override { wait(timeout_); }
  void wait(std::chrono::milliseconds limit) override {
    if (done_) return;
    done_ = true;
    const Clock::time_point deadline = Clock::now() + limit;
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      try {
        if (marker_->done()) return;
      } catch (const std::exception& e) {
        group_->abort();
        throw CollectiveError(detail::concat("rank ", rank_, ": ", what_, " failed: ", e.what()));
      }
      if (Clock::now() >= deadline) {
        // The watchdog: an abandoned NCCL collective would spin on the GPU for ever.
        group_->abort();
        throw CollectiveError(detail::concat("rank ", rank_, ": ", what_, " did not complete within ",
                                             std::chrono::duration<double>(limit).count(),
                                             " s: a rank is missing from it (dead, stuck, or in another collective; "
                                             "check_calls compares the ranks' calls); the NCCL group is aborted"));
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(2000));
    }
  }

 private:
  std::shared_ptr<DeviceCollectives> group_;
  std::unique_ptr<DeviceCollectives::Marker> marker_;
  std::string what_;
  int rank_;
  std::chrono::milliseconds timeout_;
  bool done_ = false;
};

}  // namespace

NcclCommunicator::NcclCommunicator(Device device, const std::string& id, int rank, int size,
                                   CommunicatorOptions options)
    : device_(device), rank_(rank), size_(size), options_(options) {
  QTUNE_CHECK(device.is_cuda(), "NcclCommunicator: rank ", rank, " was given ", device.str(), ", not a GPU");
  group_ = backend_for(device).join_collectives(id, rank, size);
}

Device NcclCommunicator::local_device() {
  const int gpus = cuda_device_count();
  QTUNE_CHECK(gpus > 0, "NCCL ranks need GPUs, and this process sees none: train on device=cpu (CPU ranks over MPI)");
  int local = 0;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
    if (const char* value = std::getenv(name)) {
      local = std::atoi(value);
      break;
    }
  return Device::cuda(local % gpus);
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::world(Communicator& bootstrap, CommunicatorOptions options) {
  const Device device = local_device();
  std::string id;
  if (bootstrap.rank() == 0) id = backend_for(device).new_collectives_id();
  std::vector<char> bytes(128, 0);
  QTUNE_CHECK(id.size() <= bytes.size(), "NCCL's group id is ", id.size(), " bytes, more than 128");
  std::copy(id.begin(), id.end(), bytes.begin());
  bootstrap.broadcast(Buffer{bytes.data(), static_cast<int64_t>(bytes.size()), DType::u8}, 0)->wait();
  auto comm = std::make_unique<NcclCommunicator>(device, std::string(bytes.begin(), bytes.end()), bootstrap.rank(),
                                                 bootstrap.size(), options);
  comm->bootstrap_ = &bootstrap;
  return comm;
}

void NcclCommunicator::begin(const CallSignature& call, const Buffer& send, const Buffer& recv) {
  check_buffers(call, size_, send, recv);
  QTUNE_CHECK(send.device == device_ || send.count == 0, describe(call), ": NCCL moves GPU buffers of ", device_.str(),
              " (this rank's device), got ", send.device.str());
  ++sequence_;
  if (!options_.check_calls) return;
  // The ranks' calls side by side, through the group itself.
  const Tensor mine = Tensor::from_data(&call, {static_cast<int64_t>(sizeof(CallSignature))}, DType::u8, device_);
  const Tensor all = Tensor::empty({static_cast<int64_t>(sizeof(CallSignature)) * size_}, DType::u8, device_);
  group_->all_gather(mine.data_ptr(), all.data_ptr(), mine.numel(), DType::u8);
  NcclWork(group_, group_->marker(), "the call check before " + describe(call), rank_, options_.timeout).wait();
  const std::vector<uint8_t> bytes = all.to_vector<uint8_t>();
  std::vector<CallSignature> calls(static_cast<size_t>(size_));
  std::memcpy(calls.data(), bytes.data(), bytes.size());
  const std::string mismatch = find_mismatch(calls);
  if (!mismatch.empty()) {
    group_->abort();
    throw CollectiveError(detail::concat("rank ", rank_, ": the ranks call different collectives: ", mismatch));
  }
}

std::unique_ptr<Work> NcclCommunicator::finish(const CallSignature& call) {
  return std::make_unique<NcclWork>(group_, group_->marker(),
                                    detail::concat(describe(call), " (collective #", call.sequence, ")"), rank_,
                                    options_.timeout);
}

std::unique_ptr<Work> NcclCommunicator::all_gather(const Buffer& send, const Buffer& recv) {
  const CallSignature call{sequence_, send.count, recv.count, -1, Collective::all_gather, Reduce::sum, send.dtype};
  begin(call, send, recv);
  group_->all_gather(send.data, recv.data, send.count, send.dtype);
  return finish(call);
}

std::unique_ptr<Work> NcclCommunicator::reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) {
  const CallSignature call{sequence_, send.count, recv.count, -1, Collective::reduce_scatter, op, send.dtype};
  begin(call, send, recv);
  group_->reduce_scatter(send.data, recv.data, recv.count, send.dtype, op == Reduce::max);
  return finish(call);
}

std::unique_ptr<Work> NcclCommunicator::all_reduce(const Buffer& buffer, Reduce op) {
  const CallSignature call{sequence_, buffer.count, buffer.count, -1, Collective::all_reduce, op, buffer.dtype};
  begin(call, buffer, buffer);
  group_->all_reduce(buffer.data, buffer.count, buffer.dtype, op == Reduce::max);
  return finish(call);
}

std::unique_ptr<Work> NcclCommunicator::broadcast(const Buffer& buffer, int root) {
  const CallSignature call{sequence_,   buffer.count, buffer.count, root, Collective::broadcast,
                           Reduce::sum, buffer.dtype};
  begin(call, buffer, buffer);
  group_->broadcast(buffer.data, buffer.count, buffer.dtype, root);
  return finish(call);
}

std::unique_ptr<Work> NcclCommunicator::barrier() {
  // NCCL has no barrier: an all-reduce of one value that every rank must join.
  const Tensor one = Tensor::zeros({1}, DType::f32, device_);
  const CallSignature call{sequence_, 0, 0, -1, Collective::barrier, Reduce::sum, DType::f32};
  begin(call, Buffer{nullptr, 0, DType::f32, device_}, Buffer{nullptr, 0, DType::f32, device_});
  group_->all_reduce(one.data_ptr(), 1, DType::f32, false);
  auto work = finish(call);
  struct Holding final : Work {  // keeps the value alive until the collective is done
    std::unique_ptr<Work> inner;
    Tensor value;
    void wait() override { inner->wait(); }
    void wait(std::chrono::milliseconds limit) override { inner->wait(limit); }
  };
  auto holding = std::make_unique<Holding>();
  holding->inner = std::move(work);
  holding->value = one;
  return holding;
}

void NcclCommunicator::abort(const std::string& reason, int code) {
  group_->abort();
  if (bootstrap_ != nullptr) bootstrap_->abort(reason, code);
  std::fprintf(stderr, "%s%s\n", reason.rfind("rank ", 0) == 0 ? "" : detail::concat("rank ", rank_, ": ").c_str(),
               reason.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace qtune::dist
