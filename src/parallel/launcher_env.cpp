// What mpirun tells a process it starts, read from the environment: the same with or without MPI
// in the build (mpi_comm.cpp, no_mpi_comm.cpp).
#include <algorithm>
#include <cstdlib>

#include "parallel/mpi_comm.h"

namespace dsv3 {

int launcher_world_size() {
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  return n ? std::max(1, std::atoi(n)) : 1;
}

int launcher_rank() {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  return r ? std::max(0, std::atoi(r)) : 0;
}

}  // namespace dsv3
