#pragma once
// The communicator a program runs with: MPI's world when a launcher (mpirun, srun) started this process as
// one of its ranks, one rank alone otherwise. The same program runs both ways.
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// The start of an mpirun command line that runs `nproc` ranks on this machine ({"mpirun", "-np", "N", ...});
// the program and its arguments follow. Sets OMP_NUM_THREADS, when unset, to share the cores out among the
// ranks: N ranks of a machine's OpenMP threads each would spin against one another. Throws when this process
// already is a rank.
std::vector<std::string> local_mpirun_command(int nproc);

}  // namespace qtune::dist
