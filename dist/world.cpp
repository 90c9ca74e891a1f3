#include "dist/world.h"

#include <cstdlib>

#include "dist/local_communicator.h"
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

}  // namespace qtune::dist
