# CPU GEMM library (QTUNE_BLAS). The default is oneDNN: it picks its kernels from the CPU's feature flags,
# while Debian's OpenBLAS 0.3.21 picks them from the CPU model and falls back to its generic Prescott
# kernels on CPUs it does not know (an AVX-512 Xeon VM: 44 GFLOP/s against oneDNN's 267, unless
# OPENBLAS_CORETYPE is set). Where OpenBLAS does know the CPU the two are within a few percent.
# tools/bench/README.md has the tables; `qtune bench gemm` refreshes them.
#
#   openblas  cblas_sgemm/cblas_dgemm. The OpenMP build of OpenBLAS is preferred: qtune's own kernels run
#             on OpenMP, and the pthread build keeps a second pool of busy threads that competes with
#             OpenMP's spinning workers on small machines.
#   eigen     Eigen's matrix product (header only, always available).
#   onednn    dnnl_sgemm for f32 (f64 stays on Eigen: oneDNN has no f64 GEMM).
#
# QTUNE_BLAS stays a cache variable so cmake/install.cmake can record the choice in the package config.
set(QTUNE_BLAS "onednn" CACHE STRING "CPU GEMM library: openblas, eigen or onednn")
set_property(CACHE QTUNE_BLAS PROPERTY STRINGS openblas eigen onednn)
string(TOLOWER "${QTUNE_BLAS}" _qtune_blas)

# Both optional libraries are looked up whatever the choice, so tools/bench can time them beside qtune.
# Debian installs each OpenBLAS threading variant in its own directory; look in the OpenMP one first.
find_path(QTUNE_OPENBLAS_INCLUDE_DIR cblas.h
  HINTS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
  PATH_SUFFIXES openblas ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread)
find_library(QTUNE_OPENBLAS_LIBRARY NAMES openblas
  HINTS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
  PATH_SUFFIXES openblas-openmp openblas-pthread)
# oneDNN's package config drags in OpenCL (Debian builds it with the OCL GPU runtime); the CPU GEMM
# entry points need only the library and its C header.
find_path(QTUNE_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
find_library(QTUNE_DNNL_LIBRARY NAMES dnnl)

if(_qtune_blas STREQUAL "openblas")
  if(NOT QTUNE_OPENBLAS_INCLUDE_DIR OR NOT QTUNE_OPENBLAS_LIBRARY)
    message(FATAL_ERROR "QTUNE_BLAS=openblas but OpenBLAS was not found (cblas.h: ${QTUNE_OPENBLAS_INCLUDE_DIR}, "
      "library: ${QTUNE_OPENBLAS_LIBRARY}). Install libopenblas-openmp-dev (Debian), or configure with "
      "-DQTUNE_BLAS=eigen.")
  endif()
  if(NOT QTUNE_OPENBLAS_LIBRARY MATCHES "openmp")
    message(WARNING "QTUNE_BLAS=openblas: using ${QTUNE_OPENBLAS_LIBRARY}, which may be the pthread build; "
      "install libopenblas-openmp-dev so OpenBLAS shares OpenMP's threads with qtune's kernels.")
  endif()
  # The library sits in a variant directory outside the default search path, so CMake's RPATH points
  # there and the loader does not take whichever variant the libopenblas.so.0 alternative names.
  target_include_directories(qtune SYSTEM PRIVATE ${QTUNE_OPENBLAS_INCLUDE_DIR})
  target_link_libraries(qtune PRIVATE ${QTUNE_OPENBLAS_LIBRARY})
  target_compile_definitions(qtune PRIVATE QTUNE_USE_OPENBLAS=1)
  message(STATUS "qtune GEMM: OpenBLAS (${QTUNE_OPENBLAS_LIBRARY})")
elseif(_qtune_blas STREQUAL "onednn")
  if(NOT QTUNE_DNNL_INCLUDE_DIR OR NOT QTUNE_DNNL_LIBRARY)
    message(FATAL_ERROR "QTUNE_BLAS=onednn but oneDNN was not found (dnnl.h: ${QTUNE_DNNL_INCLUDE_DIR}, "
      "library: ${QTUNE_DNNL_LIBRARY}). Install libdnnl-dev, or configure with -DQTUNE_BLAS=openblas or eigen.")
  endif()
  target_include_directories(qtune SYSTEM PRIVATE ${QTUNE_DNNL_INCLUDE_DIR})
  target_link_libraries(qtune PRIVATE ${QTUNE_DNNL_LIBRARY})
  target_compile_definitions(qtune PRIVATE QTUNE_USE_ONEDNN=1)
  message(STATUS "qtune GEMM: oneDNN (${QTUNE_DNNL_LIBRARY})")
elseif(_qtune_blas STREQUAL "eigen")
  message(STATUS "qtune GEMM: Eigen")
else()
  message(FATAL_ERROR "QTUNE_BLAS must be openblas, eigen or onednn (got '${QTUNE_BLAS}')")
endif()
set(QTUNE_BLAS "${_qtune_blas}")
