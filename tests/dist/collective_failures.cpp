// A program that goes wrong on purpose under `mpirun -np 2`, for collective_failures.sh:
//   deadline: rank 1 reaches the all_reduce 4 s late; rank 0 gives up after 1 s and ends the job.
//   mismatch: with check_calls, rank 0 calls all_reduce and rank 1 all_gather; both stop naming the two calls.
//   death:    rank 1 is killed (SIGKILL) while rank 0 waits in an all_reduce with a 60 s deadline; the
//             launcher stops rank 0, which says what it was waiting in.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "dist/mpi_communicator.h"

using namespace qtune;
using namespace qtune::dist;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "deadline" && mode != "mismatch" && mode != "death") {
    std::fprintf(stderr, "usage: %s deadline|mismatch|death\n", argv[0]);
    return 2;
  }
  CommunicatorOptions options;
  options.timeout = std::chrono::seconds(mode == "death" ? 60 : 1);
  options.check_calls = mode == "mismatch";
  const auto comm = MpiCommunicator::world(options);
  std::vector<float> x(4, 1.0f), gathered(2 * static_cast<size_t>(comm->size()));
  try {
    comm->barrier()->wait();
    if (comm->rank() == 1) {
      if (mode == "deadline") std::this_thread::sleep_for(std::chrono::seconds(4));
      if (mode == "death") std::raise(SIGKILL);
      if (mode == "mismatch") {
        comm->all_gather(Buffer{x.data(), 2, DType::f32}, Buffer{gathered.data(), 2 * comm->size(), DType::f32})
            ->wait();
        return 0;
      }
    }
    comm->all_reduce(Buffer{x.data(), 4, DType::f32}, Reduce::sum)->wait();
    std::printf("rank %d: the collective completed\n", comm->rank());
  } catch (const CollectiveError& e) {
    comm->abort(e.what(), 3);
  }
  return 0;
}
