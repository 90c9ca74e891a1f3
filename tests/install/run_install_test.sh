#!/usr/bin/env bash
# Installs a finished qtune build into a fresh prefix, then configures, builds and runs the outside
# project in tests/install against that prefix only.
# Usage: run_install_test.sh BUILD_DIR WORK_DIR CXX_COMPILER [CXX_FLAGS] [LINKER_FLAGS]
set -euo pipefail

build_dir=$1
work_dir=$2
cxx=$3
cxx_flags=${4:-}
linker_flags=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)

rm -rf "$work_dir"
prefix=$work_dir/prefix
cmake --install "$build_dir" --prefix "$prefix" >"$work_dir.install.log" 2>&1 || {
  cat "$work_dir.install.log"; exit 1; }
mv "$work_dir.install.log" "$prefix/install.log"

# The installed package must stand on its own: any path into the source or build tree would work
# here and break on every other machine.
if grep -rlF -e "$source_dir" -e "$(cd "$build_dir" && pwd)" "$prefix"/lib*/cmake/qtune "$prefix"/include/qtune; then
  echo "FAIL: the installed package above refers to the source or build tree" >&2
  exit 1
fi

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# CMAKE_FIND_USE_PACKAGE_REGISTRY=OFF and the lone prefix make sure the package found is this one.
cmake -S "$here" -B "$work_dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$cxx_flags" -DCMAKE_EXE_LINKER_FLAGS="$linker_flags" \
  "${launcher[@]}"
cmake --build "$work_dir/build"
"$work_dir/build/consumer"
# The installed CLI must run from the prefix alone (it needs RPATH to a shared libqtune).
if [ -x "$prefix/bin/qtune" ]; then
  "$prefix/bin/qtune" version
fi
