#pragma once
// The communicator a program runs with: MPI's world when a launcher (mpirun, srun) started this process as
// one of its ranks, one rank alone otherwise. The same program runs both ways.
#include <memory>
#include <optional>

#include "dist/communicator.h"

namespace qtune::dist {

// True when the environment names this process a rank of an MPI job (Open MPI's mpirun, PMI or PMIx
// launchers such as srun).
bool launched_as_rank();
// This process's rank as the launcher named it (before any communicator exists), when launched_as_rank().
std::optional<int> launched_rank();

// MpiCommunicator::world() when launched_as_rank(), else a LocalCommunicator. Throws when launched as a
// rank by a build without MPI.
std::unique_ptr<Communicator> world_communicator(CommunicatorOptions options = {});

}  // namespace qtune::dist
