// Comm over MPI (Open MPI from Debian: libopenmpi-dev). The only code in dsv3 that names MPI.
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace dsv3 {

// The communicator of this process: an MPI one over MPI_COMM_WORLD when the process was started
// by mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, or PMIx's PMIX_RANK, is set), else LocalComm. MPI
// is initialised here (MPI_THREAD_SERIALIZED: the model's thread calls collectives, one at a
// time) and finalised when the returned object goes. Throws Error when started by mpirun with
// more than one rank in a build without MPI (DSV3_MPI off).
std::unique_ptr<Comm> open_world_comm();

// The number of ranks mpirun started (OMPI_COMM_WORLD_SIZE), 1 when not under mpirun; without
// initialising MPI (a command can refuse to run under mpirun before it starts anything).
int launcher_world_size();

// This process's rank as mpirun numbered it (OMPI_COMM_WORLD_RANK), 0 when not under mpirun;
// without initialising MPI (a command can split its work by rank before it loads anything).
int launcher_rank();

// Whether this build can run across processes.
bool built_with_mpi();

}  // namespace dsv3
