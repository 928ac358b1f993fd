// open_world_comm in a build without MPI (cmake -DDSV3_MPI=OFF, or no MPI found): one process.
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "parallel/mpi_comm.h"

namespace dsv3 {

bool built_with_mpi() { return false; }

std::unique_ptr<Comm> open_world_comm() {
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (n && std::string(n) != "1")
    fail("started by mpirun with {} ranks, but this dsv3 was built without MPI (install libopenmpi-dev and rebuild; "
         "cmake reports 'MPI: found')",
         n);
  return std::make_unique<LocalComm>();
}

}  // namespace dsv3
