# Install rules and the qtune CMake package (find_package(qtune) -> qtune::qtune).
#
# Included after blas.cmake and cuda.cmake so that every dependency those files attach to the library
# is already on it; the package config discovers the dependencies it must find from the exported
# target itself, so later additions there need no edit here.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(QTUNE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/qtune CACHE STRING
    "Where the qtune package config files are installed (relative to the prefix)")

# Public headers: every .h under the library's layers except the backends (cpu/ and cuda/ register
# themselves with the engine; users reach them through backend_for) and the headers listed in
# QTUNE_PRIVATE_HEADERS, which expose a private dependency. Globbed so a new header is installed and
# reaches the umbrella header without anyone editing this file.
set(QTUNE_PRIVATE_HEADERS
  engine/io/json_reader.h  # nlohmann/json, which consumers of the package do not need
)
set(qtune_public_headers)
foreach(layer ${QTUNE_LAYERS})
  file(GLOB_RECURSE layer_headers CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/${layer}/*.h)
  list(FILTER layer_headers EXCLUDE REGEX "^cpu/")
  list(REMOVE_ITEM layer_headers ${QTUNE_PRIVATE_HEADERS})
  list(APPEND qtune_public_headers ${layer_headers})
endforeach()
list(SORT qtune_public_headers)

# The umbrella header <qtune/qtune.h>.
set(QTUNE_UMBRELLA_INCLUDES "")
foreach(header ${qtune_public_headers})
  string(APPEND QTUNE_UMBRELLA_INCLUDES "#include \"${header}\"\n")
endforeach()
if(NOT DEFINED QTUNE_HAVE_CUDA)
  set(QTUNE_HAVE_CUDA OFF)
endif()
if(NOT DEFINED QTUNE_BLAS)
  set(QTUNE_BLAS eigen)
endif()
string(TOLOWER "${QTUNE_BLAS}" QTUNE_BLAS)
if(QTUNE_HAVE_CUDA)
  set(QTUNE_CUDA_BUILT 1)
else()
  set(QTUNE_CUDA_BUILT 0)
endif()
if(QTUNE_CUDA_SIM)
  set(QTUNE_CUDA_SIMULATED 1)
else()
  set(QTUNE_CUDA_SIMULATED 0)
endif()
set(QTUNE_GENERATED_INCLUDE_DIR ${CMAKE_BINARY_DIR}/include)
configure_file(${PROJECT_SOURCE_DIR}/cmake/qtune.h.in ${QTUNE_GENERATED_INCLUDE_DIR}/qtune/qtune.h @ONLY)

# Headers include one another as "engine/tensor.h", so the installed tree needs <prefix>/include/qtune
# on the path; <prefix>/include serves <qtune/qtune.h>.
target_include_directories(qtune PUBLIC
  $<BUILD_INTERFACE:${QTUNE_GENERATED_INCLUDE_DIR}>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/qtune>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

set_target_properties(qtune PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
  EXPORT_NAME qtune
  # A shared qtune may link libraries from directories the loader does not search (Debian's OpenBLAS
  # variants live in their own directories); keep those on the installed library's RPATH.
  INSTALL_RPATH_USE_LINK_PATH TRUE)

install(TARGETS qtune EXPORT qtuneTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(header ${qtune_public_headers})
  get_filename_component(header_dir ${header} DIRECTORY)
  install(FILES ${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/qtune/${header_dir})
endforeach()
install(FILES ${QTUNE_GENERATED_INCLUDE_DIR}/qtune/qtune.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/qtune)

install(EXPORT qtuneTargets NAMESPACE qtune:: DESTINATION ${QTUNE_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/qtuneConfig.cmake.in
  ${CMAKE_BINARY_DIR}/qtuneConfig.cmake
  INSTALL_DESTINATION ${QTUNE_INSTALL_CMAKEDIR})
# 0.x: minor versions may break the API, so a request for 0.1 accepts 0.1.z only.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/qtuneConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/qtuneConfig.cmake ${CMAKE_BINARY_DIR}/qtuneConfigVersion.cmake
  DESTINATION ${QTUNE_INSTALL_CMAKEDIR})
