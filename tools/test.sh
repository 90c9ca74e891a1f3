#!/usr/bin/env bash
# The one test command (README and .ci/run both call it): install missing Debian packages, configure
# the `default` preset, build, run every CTest test.
# PRESET picks another preset (debug, asan, cuda); JOBS caps parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

preset=${PRESET:-default}
jobs=${JOBS:-$(nproc)}

bash tools/install_deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -j "$jobs"
