# SPDX-License-Identifier: MIT
# MprocMPI.cmake - the optional MPI parts of the build (issue 13; docs/mpi.md).
#   -DMPROC_MPI=AUTO  (default) build them when find_package(MPI COMPONENTS C) finds MPI and mpiexec
#   -DMPROC_MPI=ON    build them; configuring fails, saying what to install, when MPI is missing
#   -DMPROC_MPI=OFF   never look for MPI
# libmproc itself never needs MPI: only libmproc-mpi (src/mpi: the pool's MPI backend, its own
# library, CMake target mproc::mproc-mpi, pkg-config mproc-mpi), bench/mpi and tests/mpi use it.
# Sets MPROC_HAVE_MPI, MPROC_MPIEXEC and the target MPI::MPI_C.
set(MPROC_MPI AUTO CACHE STRING "Build the MPI parts: AUTO (when MPI is found), ON (required), OFF")
set_property(CACHE MPROC_MPI PROPERTY STRINGS AUTO ON OFF)

set(MPROC_HAVE_MPI OFF)
set(MPROC_MPIEXEC "")
string(TOUPPER "${MPROC_MPI}" _mproc_mpi_mode)
if(NOT _mproc_mpi_mode MATCHES "^(AUTO|ON|OFF|TRUE|FALSE|YES|NO|1|0)$")
  message(FATAL_ERROR "MPROC_MPI must be AUTO, ON or OFF (it is '${MPROC_MPI}')")
endif()
if(_mproc_mpi_mode STREQUAL "AUTO" AND NOT MPROC_BUILD_BENCH AND NOT MPROC_BUILD_TESTS)
  # Nothing would use it (e.g. mproc inside another project): do not go looking.
  message(STATUS "MPI parts: off (neither benchmarks nor tests are built)")
elseif(_mproc_mpi_mode STREQUAL "AUTO" OR MPROC_MPI)
  find_package(MPI COMPONENTS C QUIET)
  if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
    set(MPROC_HAVE_MPI ON)
    set(MPROC_MPIEXEC ${MPIEXEC_EXECUTABLE})
    message(STATUS "MPI parts: on (MPI ${MPI_C_VERSION}, ${MPIEXEC_EXECUTABLE})")
  elseif(_mproc_mpi_mode STREQUAL "AUTO")
    message(STATUS "MPI parts: off (no MPI for C found; Debian: apt-get install openmpi-bin "
                   "libopenmpi-dev)")
  else()
    message(FATAL_ERROR "MPROC_MPI=${MPROC_MPI} but no MPI for C (library, headers and mpiexec) "
                        "was found. Debian: apt-get install openmpi-bin libopenmpi-dev (or "
                        "scripts/deps.sh --ci); or configure with -DMPROC_MPI=AUTO or OFF.")
  endif()
else()
  message(STATUS "MPI parts: off (MPROC_MPI=${MPROC_MPI})")
endif()
unset(_mproc_mpi_mode)

# libmproc-mpi (src/mpi/CMakeLists.txt): the MPI pool backend.
if(MPROC_HAVE_MPI)
  add_subdirectory(${PROJECT_SOURCE_DIR}/src/mpi ${PROJECT_BINARY_DIR}/src/mpi)
endif()

# The hand-written master/worker loop (bench/mpi/raw_master_worker.c): the benchmark baseline and
# the program the kill test launches. Defined once, by bench/mpi or tests/mpi, whichever is built
# first; it lands in <build>/bench/mpi either way, so the launchers know where it is.
function(mproc_mpi_raw_target)
  if(NOT MPROC_HAVE_MPI OR TARGET mpi_raw_master_worker)
    return()
  endif()
  add_executable(mpi_raw_master_worker ${PROJECT_SOURCE_DIR}/bench/mpi/raw_master_worker.c)
  target_compile_definitions(mpi_raw_master_worker PRIVATE _GNU_SOURCE)
  target_link_libraries(mpi_raw_master_worker PRIVATE MPI::MPI_C mproc_flags)
  set_target_properties(mpi_raw_master_worker PROPERTIES OUTPUT_NAME raw_master_worker
                        RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench/mpi)
endfunction()
