#!/usr/bin/env bash
# The check to run on the day a GPU is lent: builds only what runs on the GPU (the gpu tests, the CUDA
# benchmarks, the CLI) for sm_90a, runs the gpu tests, the CUDA benchmarks, the command-line run on cuda,
# then every gpu test under compute-sanitizer memcheck, and writes everything into LOG_DIR with one summary
# file (summary.log). The slowest step comes last, so a check cut short by its lease still reports the
# rest. On a GPU machine a failed or SKIPPED gpu test fails the check; without a GPU it exits 77 after
# building, since nothing could run on a GPU. The build is timed: it must stay well inside 8 minutes.
#
#   tools/gpu_check.sh LOG_DIR [BUILD_DIR]      (BUILD_DIR defaults to build-gpu/ in the repository;
#                                               QTUNE_JOBS overrides the build parallelism, nproc;
#                                               QTUNE_CUDA_ARCHS the architectures, 90a-real;
#                                               QTUNE_GPU_PREBUILT=DIR takes tools/gpu_bundle.sh's output
#                                               instead of building: a GPU image without qtune's build
#                                               dependencies; QTUNE_STEP_TIMEOUT bounds each test,
#                                               benchmark and run, QTUNE_MEMCHECK_TIMEOUT memcheck,
#                                               both in seconds, 300)
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
step_timeout=${QTUNE_STEP_TIMEOUT:-300}
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
if [[ -n ${QTUNE_GPU_PREBUILT:-} ]]; then
  bundle=$(cd "$QTUNE_GPU_PREBUILT" && pwd)
  step "GPU present: $gpu_present; running the prebuilt binaries of $bundle in $build"
  unpacked=$(mktemp -d)
  tar -xJf "$bundle/bundle.tar.xz" -C "$unpacked"
  mkdir -p "$build"
  cp -a "$unpacked/build/." "$build/"
  # cuBLASLt and NCCL are the GPU image's own: the toolkit's, or the ones its Python packages carry.
  libs=$unpacked/lib
  for wanted in libcublasLt.so.13 libnccl.so.2; do
    found=$(find /usr/local /opt /usr/lib -name "$wanted" 2> /dev/null | head -n 1 || true)
    [[ -n $found ]] && libs="$libs:$(dirname "$found")"
    step "$wanted: ${found:-not found}"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! ldd "$build/tools/qtune" > "$logs/ldd.log" 2>&1 || grep -q 'not found' "$logs/ldd.log"; then
    step "FAIL: the prebuilt CLI cannot load its libraries (see ldd.log)"
    grep 'not found' "$logs/ldd.log" | tee -a "$logs/summary.log"
    exit 1
  fi
else
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
fi
"$build/tools/qtune" version 2>&1 | tee -a "$logs/summary.log" || true

status=0
# The gpu tests through CTest, or as CTest would run them where the image has no ctest.
gpu_tests() {
  if command -v ctest > /dev/null; then
    ctest --test-dir "$build" -L gpu -R '^test_cuda' --output-on-failure --no-tests=error --timeout "$step_timeout"
    return
  fi
  local rc=0 fault
  (cd "$build/tests" && timeout "$step_timeout" ./test_cuda "--test-case-exclude=*device fault*") || rc=1
  for fault in embedding cross_entropy; do
    (cd "$build/tests" && timeout "$step_timeout" ./test_cuda "--test-case=device fault: $fault*") || rc=1
  done
  (cd "$build/tests" && timeout "$step_timeout" ./test_cuda_recipes) || rc=1
  return $rc
}
if gpu_tests > "$logs/ctest_gpu.log" 2>&1; then
  step "gpu tests: passed or skipped"
else
  status=1
  step "FAIL: gpu tests (see ctest_gpu.log)"
fi
skipped=$(grep -c -E "\(Skipped\)|^SKIPPED" "$logs/ctest_gpu.log" || true)
tail -n 8 "$logs/ctest_gpu.log" | tee -a "$logs/summary.log"

bench="$build/cuda_gemm_bench"
set +e
timeout "$step_timeout" "$bench" 0.5 > "$logs/bench_cuda_gemm.log" 2>&1
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
    if timeout "$step_timeout" "$build/tools/qtune" bench train --device cuda $variant --steps 5 --warmup 2 \
         >> "$logs/bench_train.log" 2>&1; then
      step "bench train $variant:"
      grep -E "^\| (median|best)" "$logs/bench_train.log" | tail -n 3 | tee -a "$logs/summary.log"
    else
      status=1
      step "FAIL: bench train --device cuda $variant (see bench_train.log)"
    fi
  done
fi

# The command line end to end: qtune run (bf16, rowwise float8) and generate on cuda.
if [[ $gpu_present -eq 1 ]]; then
  if timeout "$step_timeout" "$root/tests/cli/run_cuda.sh" "$build/tools/qtune" "$root" "$logs/run_cuda_out" \
       > "$logs/run_cuda.log" 2>&1; then
    step "qtune run + generate on cuda:"
    grep -E "^\[(train|run)\]|loss" "$logs/run_cuda.log" | tail -n 4 | tee -a "$logs/summary.log"
    tail -n 2 "$logs/run_cuda.log" | tee -a "$logs/summary.log"
  else
    status=1
    step "FAIL: tests/cli/run_cuda.sh (see run_cuda.log)"
    tail -n 5 "$logs/run_cuda.log" | tee -a "$logs/summary.log"
  fi
  rm -rf "$logs/run_cuda_out"
fi

# memcheck last: it is the slowest step. The device-fault cases are left out, since their faults are
# the point; each runs plainly in its own process above.
if [[ $gpu_present -eq 1 ]] && command -v compute-sanitizer > /dev/null; then
  if timeout "${QTUNE_MEMCHECK_TIMEOUT:-300}" compute-sanitizer --tool memcheck --error-exitcode 99 \
       "$build/tests/test_cuda" "--test-case-exclude=*device fault*" > "$logs/memcheck.log" 2>&1; then
    step "compute-sanitizer memcheck: clean"
  else
    status=1
    step "FAIL: compute-sanitizer memcheck (see memcheck.log)"
    grep -m 10 -E "Invalid|ERROR|error|Timeout" "$logs/memcheck.log" | tee -a "$logs/summary.log" || true
  fi
elif [[ $gpu_present -eq 1 ]]; then
  step "compute-sanitizer not found: memcheck not run"
fi

if [[ $gpu_present -eq 1 && $skipped -gt 0 ]]; then
  step "FAIL: $skipped gpu test(s) SKIPPED although nvidia-smi sees a GPU"
  status=1
fi
if [[ $status -eq 0 && $gpu_present -eq 0 ]]; then
  step "NO GPU: everything built, but no test or benchmark ran on a GPU (exit 77)"
  exit 77
fi
if [[ $status -eq 0 ]]; then
  step "OK: all gpu tests passed"
else
  step "gpu check FAILED"
fi
exit $status
