#pragma once
// Collectives over NCCL for GPU buffers (docs/distributed.md), through the backend's device collectives
// (engine/device_collectives.h), so dist/ needs no CUDA header. Each call is queued on the device's stream and
// returns a Work at once; Work::wait() polls its completion against the deadline and, once the deadline
// passes, aborts the NCCL group (ncclCommAbort) and throws CollectiveError naming the collective: a dead
// or stuck peer never hangs the others. Reductions are NCCL's (its ring or tree order, not rank order: GPU
// ranks agree with one process to rounding, not bit for bit; the CUDA simulator reduces in rank order).
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "engine/device_collectives.h"

namespace qtune::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Joins group `id` (Backend::new_collectives_id of one rank, sent to the others) as `rank` of `size` on `device`;
  // blocks until every rank has joined. abort() ends this process only.
  NcclCommunicator(Device device, const std::string& id, int rank, int size, CommunicatorOptions options = {});
  // The job's ranks over NCCL, each on local_device(): rank 0 makes the group's id and `bootstrap` (MPI)
  // broadcasts it. abort() goes through bootstrap, which ends every rank.
  static std::unique_ptr<NcclCommunicator> world(Communicator& bootstrap, CommunicatorOptions options = {});
  // The GPU of this rank on its node: the launcher's local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID;
  // 0 without one) modulo the GPUs present. Throws when there are none.
  static Device local_device();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view kind() const override { return "nccl"; }
  Device device() const { return device_; }

  std::unique_ptr<Work> all_gather(const Buffer& send, const Buffer& recv) override;
  std::unique_ptr<Work> reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) override;
  std::unique_ptr<Work> all_reduce(const Buffer& buffer, Reduce op) override;
  std::unique_ptr<Work> broadcast(const Buffer& buffer, int root) override;
  std::unique_ptr<Work> barrier() override;
  [[noreturn]] void abort(const std::string& reason, int code) override;

 private:
  // Checks the call's buffers (on this rank's device), compares it across the ranks with check_calls, counts it.
  void begin(const CallSignature& call, const Buffer& send, const Buffer& recv);
  std::unique_ptr<Work> finish(const CallSignature& call);

  Device device_;
  int rank_, size_;
  CommunicatorOptions options_;
  std::shared_ptr<DeviceCollectives> group_;
  Communicator* bootstrap_ = nullptr;
  int64_t sequence_ = 1;
};

}  // namespace qtune::dist
