// GPU ranks as separate processes under `mpirun -np N`, over dist::NcclCommunicator (the CUDA simulator's
// NCCL meets them through /dev/shm), for nccl_processes.sh:
//   collectives: every collective on every rank against its expected result, printing "rank R: collectives ok";
//   mismatch:    rank 0 calls all_reduce and rank 1 all_gather at the same place (no check_calls): NCCL itself
//                finds the disagreement and every rank stops naming both calls;
//   late:        rank 1 reaches the all_reduce 4 s late; rank 0 stops once the wait outlives its deadline.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"
#include "engine/tensor.h"

using namespace qtune;
using namespace qtune::dist;

namespace {

// Exits non-zero naming the rank and what differs.
void expect(bool ok, int rank, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
  std::exit(1);
}

void run_collectives(NcclCommunicator& comm) {
  const int r = comm.rank(), n = comm.size();
  const Device gpu = comm.device();
  // all_gather: rank q sends {q, q + 0.5}.
  const Tensor mine = Tensor::from_vector<float>({float(r), float(r) + 0.5f}, {2}, gpu);
  const Tensor all = Tensor::empty({2 * n}, DType::f32, gpu);
  comm.all_gather(buffer_of(mine), buffer_of(all))->wait();
  const std::vector<float> got = all.to_vector<float>();
  for (int q = 0; q < n; ++q)
    expect(got[2 * q] == float(q) && got[2 * q + 1] == float(q) + 0.5f, r, "all_gather: wrong piece of rank " +
                                                                             std::to_string(q));
  // reduce_scatter: rank q sends element i = q + i; rank r receives the sum over q of (q + r).
  std::vector<float> send(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) send[static_cast<size_t>(i)] = float(r + i);
  const Tensor sent = Tensor::from_vector<float>(send, {n}, gpu), piece = Tensor::empty({1}, DType::f32, gpu);
  comm.reduce_scatter(buffer_of(sent), buffer_of(piece), Reduce::sum)->wait();
  expect(piece.to_vector<float>()[0] == float(n * (n - 1) / 2 + n * r), r, "reduce_scatter: wrong sum");
  // all_reduce max and sum; a bf16 sum.
  const Tensor value = Tensor::from_vector<float>({float(r + 1)}, {1}, gpu);
  comm.all_reduce(buffer_of(value), Reduce::max)->wait();
  expect(value.to_vector<float>()[0] == float(n), r, "all_reduce max: wrong value");
  const Tensor half = Tensor::from_vector<float>({1.0f}, {1}, gpu).to(DType::bf16);
  comm.all_reduce(buffer_of(half), Reduce::sum)->wait();
  expect(half.to(DType::f32).to_vector<float>()[0] == float(n), r, "all_reduce bf16 sum: wrong value");
  // broadcast from the last rank, and a barrier.
  const Tensor b = Tensor::from_vector<float>({float(r * 10)}, {1}, gpu);
  comm.broadcast(buffer_of(b), n - 1)->wait();
  expect(b.to_vector<float>()[0] == float((n - 1) * 10), r, "broadcast: wrong value");
  comm.barrier()->wait();
  std::printf("rank %d: collectives ok on %s\n", r, gpu.str().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "collectives" && mode != "mismatch" && mode != "late") {
    std::fprintf(stderr, "usage: %s collectives|mismatch|late\n", argv[0]);
    return 2;
  }
  CommunicatorOptions options;
  options.timeout = std::chrono::seconds(mode == "late" ? 1 : 30);
  const auto mpi = MpiCommunicator::world(options);
  try {
    const auto comm = NcclCommunicator::world(*mpi, options);
    if (mode == "collectives") {
      run_collectives(*comm);
      return 0;
    }
    const Tensor x = Tensor::ones({4}, DType::f32, comm->device());
    const Tensor gathered = Tensor::empty({2 * comm->size()}, DType::f32, comm->device());
    if (comm->rank() == 1 && mode == "mismatch") {
      comm->all_gather(buffer_of(x.narrow(0, 0, 2)), buffer_of(gathered))->wait();
      return 0;
    }
    if (comm->rank() == 1 && mode == "late") std::this_thread::sleep_for(std::chrono::seconds(4));
    comm->all_reduce(buffer_of(x), Reduce::sum)->wait();
    std::printf("rank %d: the collective completed\n", comm->rank());
  } catch (const std::exception& e) {
    mpi->abort(e.what(), 3);  // the communicators' errors name the rank
  }
  return 0;
}
