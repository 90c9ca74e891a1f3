# QTUNE_CUDA=SIM: the CUDA backend's .cu and .cpp files compiled by the host C++ compiler against the
# simulated runtime, cuBLASLt and device built-ins of cuda/sim/ (its include/ stands where the toolkit's
# headers would), and linked into libqtune like any other backend. No CUDA toolkit is needed.
if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  message(FATAL_ERROR "QTUNE_CUDA=SIM runs simulated GPU threads as fibers whose switch is written for x86-64; "
                      "this machine is ${CMAKE_SYSTEM_PROCESSOR}")
endif()
set(QTUNE_HAVE_CUDA ON)
set(QTUNE_CUDA_SIM ON)
message(STATUS "qtune: CUDA backend simulated on the CPU (cuda/sim/)")

file(GLOB qtune_cuda_kernels CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cu)
file(GLOB qtune_cuda_host CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cpp ${PROJECT_SOURCE_DIR}/cuda/sim/*.cpp)
set_source_files_properties(${qtune_cuda_kernels} PROPERTIES LANGUAGE CXX)
# CMake passes -x c++ for them. `#pragma unroll` is nvcc's.
set_source_files_properties(${qtune_cuda_kernels} PROPERTIES COMPILE_OPTIONS "-Wno-unknown-pragmas")
target_sources(qtune PRIVATE ${qtune_cuda_kernels} ${qtune_cuda_host})
# The simulated toolkit's headers and the flavor's define go on the cuda/ sources only: every other source
# then compiles with exactly the command line of the real flavor's build, so ccache serves the sim preset
# from the default preset's objects (CI builds both).
set_property(SOURCE ${qtune_cuda_kernels} ${qtune_cuda_host} APPEND PROPERTY INCLUDE_DIRECTORIES
             ${PROJECT_SOURCE_DIR}/cuda/sim/include)
set_property(SOURCE ${qtune_cuda_kernels} ${qtune_cuda_host} APPEND PROPERTY COMPILE_DEFINITIONS QTUNE_CUDA_SIM)
target_compile_definitions(qtune PUBLIC QTUNE_HAVE_CUDA PRIVATE QTUNE_HAVE_NCCL)
target_link_options(qtune INTERFACE "LINKER:--undefined=qtune_cuda_backend_anchor")
