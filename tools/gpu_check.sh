#!/usr/bin/env bash
# The check to run on the day a GPU is lent: builds only what runs on the GPU (the gpu tests, the CUDA
# benchmarks, the CLI) for sm_90a, runs every gpu test under compute-sanitizer memcheck and then plain,
# runs the CUDA benchmarks, and writes everything into LOG_DIR with one summary file (summary.log).
# On a GPU machine a failed or SKIPPED gpu test fails the check; without a GPU it exits 77 after
# building, since nothing could run on a GPU. The build is timed: it must stay well inside 8 minutes.
#
#   tools/gpu_check.sh LOG_DIR [BUILD_DIR]      (BUILD_DIR defaults to build-gpu/ in the repository;
#                                               QTUNE_JOBS overrides the build parallelism, nproc;
#                                               QTUNE_CUDA_ARCHS the architectures, 90a-real)
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
archs=${QTUNE_CUDA_ARCHS:-90a-real}
start=$SECONDS
export PATH="$PATH:/usr/local/cuda/bin"
# Objects compiled here before (a carried ccache) are reused whatever directory the tree sits in.
export CCACHE_BASEDIR="$root"

step() { echo "[gpu_check $((SECONDS - start))s] $*" | tee -a "$logs/summary.log"; }
: > "$logs/summary.log"

gpu_present=0
if command -v nvidia-smi > /dev/null && nvidia-smi -L > "$logs/nvidia-smi.log" 2>&1; then
  gpu_present=1
  nvidia-smi >> "$logs/nvidia-smi.log" 2>&1 || true
  head -n 3 "$logs/nvidia-smi.log" | tee -a "$logs/summary.log"
fi
step "GPU present: $gpu_present; building for $archs in $build with $jobs jobs"

# oneDNN is the CPU GEMM library by default; a GPU machine without its headers builds with Eigen.
blas=()
[[ -e /usr/include/oneapi/dnnl/dnnl.h || -e /usr/include/dnnl.h ]] || blas=(-DQTUNE_BLAS=eigen)
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if ! cmake -S "$root" -B "$build" "${generator[@]}" "${blas[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
     -DQTUNE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" -DQTUNE_BUILD_TESTS=ON -DQTUNE_BUILD_TOOLS=ON \
     > "$logs/configure.log" 2>&1; then
  step "FAIL: configure (see configure.log)"
  tail -n 30 "$logs/configure.log"
  exit 1
fi
build_start=$SECONDS
if ! cmake --build "$build" -j "$jobs" --target test_cuda test_cuda_recipes cuda_gemm_bench qtune_cli \
     > "$logs/build.log" 2>&1; then
  step "FAIL: build (see build.log)"
  grep -m 20 -E "error|Error" "$logs/build.log" || tail -n 30 "$logs/build.log"
  exit 1
fi
step "built test_cuda, test_cuda_recipes, cuda_gemm_bench and the CLI in $((SECONDS - build_start))s"
"$build/tools/qtune" version 2>&1 | tee -a "$logs/summary.log" || true

status=0
if [[ $gpu_present -eq 1 ]] && command -v compute-sanitizer > /dev/null; then
  if timeout 300 compute-sanitizer --tool memcheck --error-exitcode 99 "$build/tests/test_cuda" \
       > "$logs/memcheck.log" 2>&1; then
    step "compute-sanitizer memcheck: clean"
  else
    status=1
    step "FAIL: compute-sanitizer memcheck (see memcheck.log)"
    grep -m 10 -E "Invalid|ERROR|error" "$logs/memcheck.log" | tee -a "$logs/summary.log" || true
  fi
elif [[ $gpu_present -eq 1 ]]; then
  step "compute-sanitizer not found: memcheck not run"
fi

if ctest --test-dir "$build" -L gpu -R '^test_cuda' --output-on-failure --no-tests=error --timeout 300 \
     > "$logs/ctest_gpu.log" 2>&1; then
  step "gpu tests: passed or skipped"
else
  status=1
  step "FAIL: gpu tests (see ctest_gpu.log)"
fi
skipped=$(grep -c "(Skipped)" "$logs/ctest_gpu.log" || true)
tail -n 8 "$logs/ctest_gpu.log" | tee -a "$logs/summary.log"

bench="$build/cuda_gemm_bench"
set +e
timeout 180 "$bench" 0.5 > "$logs/bench_cuda_gemm.log" 2>&1
bench_rc=$?
set -e
tee -a "$logs/summary.log" < "$logs/bench_cuda_gemm.log"
if [[ $bench_rc -ne 0 ]] && ! [[ $bench_rc -eq 77 && $gpu_present -eq 0 ]]; then
  status=1
  step "FAIL: cuda_gemm_bench exited $bench_rc"
fi

# Training speed on the GPU: the default 134 M-parameter Llama in bf16, then through fp8 GEMMs.
if [[ $gpu_present -eq 1 ]]; then
  for variant in "--dtype bf16" "--dtype bf16 --fp8 tensorwise" "--dtype bf16 --fp8 rowwise" "--dtype f32 --tf32"; do
    # shellcheck disable=SC2086
    if timeout 300 "$build/tools/qtune" bench train --device cuda $variant --steps 5 --warmup 2 \
         >> "$logs/bench_train.log" 2>&1; then
      step "bench train $variant:"
      grep -E "^\| (median|best)" "$logs/bench_train.log" | tail -n 3 | tee -a "$logs/summary.log"
    else
      status=1
      step "FAIL: bench train --device cuda $variant (see bench_train.log)"
    fi
  done
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
