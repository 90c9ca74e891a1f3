#pragma once
// Collectives over MPI (Open MPI) for CPU buffers, each started non-blocking and waited for with a
// deadline. Reductions do not use MPI's own: the ranks' blocks are exchanged (all-to-all for
// reduce_scatter, all-gather for all_reduce) and summed here in rank order, so the result is the same
// whatever algorithm MPI picks (docs/distributed.md). mpi.h stays out of this header.
//
// Failure handling: a collective past its deadline throws CollectiveError on every rank waiting for it;
// the program should then call abort(), which ends the whole job (MPI_Abort). A rank killed by the
// launcher (mpirun sends SIGTERM to the others when one dies) first prints which collective it was
// waiting in.
#include <memory>

#include "dist/communicator.h"

namespace qtune::dist {

class MpiCommunicator final : public Communicator {
 public:
  // The job's ranks (a duplicate of MPI_COMM_WORLD). Initializes MPI on first use, finalized at exit.
  static std::unique_ptr<MpiCommunicator> world(CommunicatorOptions options = {});
  ~MpiCommunicator() override;

  int rank() const override;
  int size() const override;
  std::string_view kind() const override { return "mpi"; }

  std::unique_ptr<Work> all_gather(const Buffer& send, const Buffer& recv) override;
  std::unique_ptr<Work> reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) override;
  std::unique_ptr<Work> all_reduce(const Buffer& buffer, Reduce op) override;
  std::unique_ptr<Work> broadcast(const Buffer& buffer, int root) override;
  std::unique_ptr<Work> barrier() override;
  [[noreturn]] void abort(const std::string& reason, int code) override;

  struct State;

 private:
  explicit MpiCommunicator(std::unique_ptr<State> state);
  // Checks the call (and, with check_calls, compares it across the ranks) and counts it.
  void begin(const CallSignature& call, const Buffer& send, const Buffer& recv);
  std::unique_ptr<State> s_;
};

}  // namespace qtune::dist
