#!/usr/bin/env bash
# Builds qtune with the CUDA backend and runs every GPU test (CTest label `gpu`) and GPU benchmark,
# writing all logs into LOG_DIR. On a GPU machine a failed or SKIPPED gpu test fails the check; on a
# machine without a GPU the check exits 77 after building, since nothing could run on a GPU.
#
#   tools/gpu_check.sh LOG_DIR [BUILD_DIR]      (BUILD_DIR defaults to build-gpu/ in the repository;
#                                               QTUNE_JOBS overrides the build parallelism, nproc)
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 LOG_DIR [BUILD_DIR]" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
logs=$(cd "$1" && pwd)
build=${2:-$root/build-gpu}
jobs=${QTUNE_JOBS:-$(nproc)}
start=$SECONDS

step() { echo "[gpu_check $((SECONDS - start))s] $*" | tee -a "$logs/summary.log"; }
: > "$logs/summary.log"

gpu_present=0
if command -v nvidia-smi > /dev/null && nvidia-smi -L > "$logs/nvidia-smi.log" 2>&1; then
  gpu_present=1
  nvidia-smi >> "$logs/nvidia-smi.log" 2>&1 || true
fi
step "GPU present: $gpu_present; building in $build with $jobs jobs"

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
if ! cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DQTUNE_CUDA=ON \
     -DQTUNE_BUILD_TESTS=ON -DQTUNE_BUILD_TOOLS=ON > "$logs/configure.log" 2>&1; then
  step "FAIL: configure (see configure.log)"
  tail -n 30 "$logs/configure.log"
  exit 1
fi
if ! cmake --build "$build" -j "$jobs" > "$logs/build.log" 2>&1; then
  step "FAIL: build (see build.log)"
  grep -m 20 -E "error|Error" "$logs/build.log" || tail -n 30 "$logs/build.log"
  exit 1
fi
step "built"

status=0
if ctest --test-dir "$build" -L gpu --output-on-failure --no-tests=error --timeout 300 \
     > "$logs/ctest_gpu.log" 2>&1; then
  step "gpu tests: passed or skipped"
else
  status=1
  step "FAIL: gpu tests (see ctest_gpu.log)"
fi
skipped=$(grep -c "(Skipped)" "$logs/ctest_gpu.log" || true)
tail -n 15 "$logs/ctest_gpu.log" | tee -a "$logs/summary.log"

bench="$build/cuda_gemm_bench"
if [[ -x "$bench" ]]; then
  set +e
  timeout 180 "$bench" 0.5 > "$logs/bench_cuda_gemm.log" 2>&1
  bench_rc=$?
  set -e
  cat "$logs/bench_cuda_gemm.log" | tee -a "$logs/summary.log"
  if [[ $bench_rc -ne 0 ]] && ! [[ $bench_rc -eq 77 && $gpu_present -eq 0 ]]; then
    status=1
    step "FAIL: cuda_gemm_bench exited $bench_rc"
  fi
else
  status=1
  step "FAIL: $bench was not built"
fi

if [[ $gpu_present -eq 1 && $skipped -gt 0 ]]; then
  step "FAIL: $skipped gpu test(s) SKIPPED although nvidia-smi sees a GPU"
  status=1
fi
if [[ $status -eq 0 && $gpu_present -eq 0 ]]; then
  step "NO GPU: everything built, but no test or benchmark ran on a GPU (exit 77)"
  exit 77
fi
[[ $status -eq 0 ]] && step "OK: all gpu tests passed" || step "gpu check FAILED"
exit $status
