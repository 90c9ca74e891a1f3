#pragma once
// The world of one rank: every collective is a copy (or nothing), done when it returns. What a program
// gets when it is not launched by mpirun or srun, so the same code runs alone and distributed.
#include "dist/communicator.h"

namespace qtune::dist {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view kind() const override { return "local"; }

  std::unique_ptr<Work> all_gather(const Buffer& send, const Buffer& recv) override;
  std::unique_ptr<Work> reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) override;
  std::unique_ptr<Work> all_reduce(const Buffer& buffer, Reduce op) override;
  std::unique_ptr<Work> broadcast(const Buffer& buffer, int root) override;
  std::unique_ptr<Work> barrier() override;
  [[noreturn]] void abort(const std::string& reason, int code) override;

 private:
  std::unique_ptr<Work> copy(const CallSignature& call, const Buffer& send, const Buffer& recv);
  int64_t sequence_ = 1;  // the number of the next collective
};

}  // namespace qtune::dist
