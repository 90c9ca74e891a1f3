# The CUDA backend. QTUNE_CUDA=AUTO builds it whenever nvcc is found, ON requires it, OFF never
# builds it; without it no backend registers for CUDA devices and asking for one is an error that says
# so. SIM builds the same sources with the host compiler against the simulated runtime of cuda/sim/
# (docs/cuda.md), so the backend runs, and its tests pass or fail, on a machine without a GPU.
# QTUNE_HAVE_CUDA tells tests and tools that a CUDA backend is in; QTUNE_CUDA_SIM which flavor.
set(QTUNE_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO (when nvcc is found), ON, SIM (simulated on the CPU) or OFF")
set_property(CACHE QTUNE_CUDA PROPERTY STRINGS AUTO ON SIM OFF)
string(TOUPPER "${QTUNE_CUDA}" qtune_cuda_mode)
if(NOT qtune_cuda_mode MATCHES "^(AUTO|ON|SIM|OFF)$")
  message(FATAL_ERROR "QTUNE_CUDA must be AUTO, ON, SIM or OFF, got '${QTUNE_CUDA}'")
endif()

set(QTUNE_HAVE_CUDA OFF)
set(QTUNE_CUDA_SIM OFF)
if(qtune_cuda_mode STREQUAL "SIM")
  include(cmake/cuda_sim.cmake)
  return()
endif()
if(NOT qtune_cuda_mode STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(QTUNE_HAVE_CUDA ON)
  elseif(qtune_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "QTUNE_CUDA=ON but no CUDA compiler was found: put nvcc on PATH, set "
                        "CMAKE_CUDA_COMPILER (e.g. /usr/local/cuda/bin/nvcc), or configure with -DQTUNE_CUDA=OFF")
  else()
    message(STATUS "qtune: nvcc not found, building without the CUDA backend")
  endif()
endif()

if(NOT QTUNE_HAVE_CUDA)
  return()
endif()

# The engine's headers are C++20, which nvcc 13 with g++ 12 compiles. sm_80 (A100) and sm_90a
# (H100/H200, with its architecture-specific instructions) are the GPUs qtune targets; compute_90 PTX
# lets the driver compile the kernels for newer GPUs (Blackwell) at load time.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90a-real;90-virtual")
endif()
if(CCACHE_PROGRAM)
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()
enable_language(CUDA)
# CMake 3.25 predates nvcc's C++20 support and knows no flag for it (the project's C++20 reaches CUDA
# targets too), so teach it the flag nvcc 13 takes.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
find_package(CUDAToolkit REQUIRED)
message(STATUS "qtune: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")

# The kernels live in an object library so they get nvcc's flags: qtune's own -Wall/-march options are
# g++ flags nvcc rejects.
file(GLOB qtune_cuda_kernels CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cu)
add_library(qtune_cuda_kernels OBJECT ${qtune_cuda_kernels})
target_include_directories(qtune_cuda_kernels PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(qtune_cuda_kernels PRIVATE -Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror)
# -fmad=false where a kernel's result must equal the CPU's bit for bit (casts, QAT, fp8, NF4, optimizer
# updates, RoPE, embedding sums...): the CPU tests stand in for the GPU only if the shared QTUNE_HD numerics
# round the same way on both sides. The kernels whose sums run in another order than the CPU's anyway
# (tests/test_cuda.cpp compares them within tolerances) keep the faster fused multiply-adds.
set(qtune_cuda_fused attention attention_wmma cross_entropy reduce rmsnorm softmax swiglu)
foreach(kernel_file ${qtune_cuda_kernels})
  get_filename_component(kernel_name ${kernel_file} NAME_WE)
  string(REPLACE "cuda_" "" kernel_name ${kernel_name})
  if(NOT kernel_name IN_LIST qtune_cuda_fused)
    set_source_files_properties(${kernel_file} PROPERTIES COMPILE_OPTIONS -fmad=false)
  endif()
endforeach()
set_target_properties(qtune_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ${BUILD_SHARED_LIBS})

file(GLOB qtune_cuda_host CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cpp)
# launch_check.cpp includes launch.cuh, which holds a triple-chevron launch: nvcc compiles it.
list(REMOVE_ITEM qtune_cuda_host ${PROJECT_SOURCE_DIR}/cuda/launch_check.cpp)
target_sources(qtune_cuda_kernels PRIVATE ${PROJECT_SOURCE_DIR}/cuda/launch_check.cpp)
set_source_files_properties(${PROJECT_SOURCE_DIR}/cuda/launch_check.cpp PROPERTIES LANGUAGE CUDA)
# NCCL (collectives between GPUs for dist::NcclCommunicator) ships with the toolkit here; without it the
# backend offers no device collectives and says so when asked.
find_path(QTUNE_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
find_library(QTUNE_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
if(QTUNE_NCCL_INCLUDE_DIR AND QTUNE_NCCL_LIBRARY)
  message(STATUS "qtune: NCCL ${QTUNE_NCCL_LIBRARY}")
  set_property(SOURCE ${qtune_cuda_host} APPEND PROPERTY INCLUDE_DIRECTORIES ${QTUNE_NCCL_INCLUDE_DIR})
  target_link_libraries(qtune PRIVATE ${QTUNE_NCCL_LIBRARY})
  target_compile_definitions(qtune PRIVATE QTUNE_HAVE_NCCL)
  target_compile_definitions(qtune_cuda_kernels PRIVATE QTUNE_HAVE_NCCL)  # one CudaBackend everywhere
else()
  message(STATUS "qtune: NCCL not found: GPU ranks cannot exchange tensors (dist::NcclCommunicator unavailable)")
  list(REMOVE_ITEM qtune_cuda_host ${PROJECT_SOURCE_DIR}/cuda/nccl_collectives.cpp)
endif()
target_sources(qtune PRIVATE ${qtune_cuda_host} $<TARGET_OBJECTS:qtune_cuda_kernels>)
target_compile_definitions(qtune PUBLIC QTUNE_HAVE_CUDA)
target_compile_definitions(qtune_cuda_kernels PRIVATE QTUNE_HAVE_CUDA)
# The toolkit's headers go on the cuda/ sources only, and the libraries are linked by path rather than as
# CUDA:: targets (whose include directories would reach every source): the rest of the library then
# compiles with the same command line in every flavor, and ccache serves one preset from another's objects.
set_property(SOURCE ${qtune_cuda_host} APPEND PROPERTY INCLUDE_DIRECTORIES ${CUDAToolkit_INCLUDE_DIRS})
target_link_libraries(qtune PRIVATE ${CUDA_cudart_LIBRARY} ${CUDA_cublasLt_LIBRARY})
# cuda/cuda_backend.cpp registers the backend (engine/backend_registry.h); keep it linked.
target_link_options(qtune INTERFACE "LINKER:--undefined=qtune_cuda_backend_anchor")
target_link_libraries(qtune_cuda_kernels PRIVATE CUDA::cudart)

# The GPU GEMM benchmark that tools/gpu_check.sh runs. Defined here rather than in tools/ because it
# exists only in CUDA builds.
if(QTUNE_BUILD_TOOLS)
  add_executable(cuda_gemm_bench ${PROJECT_SOURCE_DIR}/tools/bench/cuda_gemm_bench.cpp)
  target_link_libraries(cuda_gemm_bench PRIVATE qtune::qtune)
  target_compile_options(cuda_gemm_bench PRIVATE -Wall -Wextra -Werror)
endif()
