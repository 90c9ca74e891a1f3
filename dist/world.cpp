#include "dist/world.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "dist/local_communicator.h"
#include "engine/check.h"
#if defined(QTUNE_HAVE_MPI)
#include "dist/mpi_communicator.h"
#endif

namespace qtune::dist {

bool launched_as_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

std::optional<int> launched_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return std::nullopt;
}

std::unique_ptr<Communicator> world_communicator(CommunicatorOptions options) {
  if (!launched_as_rank()) return std::make_unique<LocalCommunicator>();
#if defined(QTUNE_HAVE_MPI)
  return MpiCommunicator::world(options);
#else
  (void)options;
  QTUNE_FAIL(
      "this process was started as an MPI rank, but this qtune was built without MPI: install Open MPI "
      "(libopenmpi-dev) and rebuild, or run without mpirun/srun");
#endif
}

std::vector<std::string> local_mpirun_command(int nproc) {
  QTUNE_CHECK(!launched_as_rank(),
              "this process already is a rank of an MPI job: start the ranks either with mpirun or with --nproc");
  QTUNE_CHECK(nproc >= 1, "--nproc must be at least 1, got ", nproc);
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(nproc)};
  // Open MPI refuses more ranks than cores unless told; it binds each rank to a core only when they fit.
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (nproc > cores) argv.push_back("--oversubscribe");
  if (std::getenv("OMP_NUM_THREADS") == nullptr)
    ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1, cores / nproc)).c_str(), 1);
  return argv;
}

}  // namespace qtune::dist
