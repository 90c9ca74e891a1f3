#!/usr/bin/env bash
# Packs a CUDA build made on this machine for a lent GPU machine whose image has the CUDA driver, cuBLASLt
# and NCCL but none of qtune's Debian build dependencies (Eigen, oneDNN, sentencepiece, fmt...), so that
# the device time goes to running rather than building. Writes into OUT_DIR:
#   build.tar.xz  the gpu-labelled test binaries, the CLI, cuda_gemm_bench and the CTest files
#   lib/          the shared libraries they load that such an image lacks
# tools/gpu_check.sh takes the result with QTUNE_GPU_PREBUILT=OUT_DIR. The build must sit at the same
# absolute path on both machines (CTest files and golden paths are absolute): link it there.
#
#   tools/gpu_bundle.sh BUILD_DIR OUT_DIR
#   (BUILD_DIR configured with -DQTUNE_CUDA=ON -DQTUNE_NATIVE=OFF, since the GPU machine's CPU is unknown)
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
binaries=(tests/test_cuda tests/test_cuda_recipes tools/qtune cuda_gemm_bench)
for binary in "${binaries[@]}"; do
  if [[ ! -x "$build/$binary" ]]; then
    echo "$0: $build/$binary is missing: build test_cuda test_cuda_recipes cuda_gemm_bench qtune_cli first" >&2
    exit 1
  fi
done
if grep -q '^QTUNE_NATIVE:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "$0: $build was built with -march=native; configure it with -DQTUNE_NATIVE=OFF for another machine" >&2
  exit 1
fi

stage=$out/stage
rm -rf "$stage" "$out/bundle.tar.xz"
mkdir -p "$stage/lib" "$stage/build"
# The driver (libcuda), the C and C++ runtimes, cuBLASLt and NCCL come from the GPU machine itself: the
# first two must match its kernel and driver, and the last two are hundreds of MiB each.
system='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libcuda|libcublasLt|libcublas|libnccl)\.'
for binary in "${binaries[@]}"; do
  ldd "$build/$binary" | awk '$3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  [[ $name =~ $system ]] && continue
  cp -L "$path" "$stage/lib/$name"
done

# The CTest files name the binaries; the rest of the build tree (objects) stays here.
(cd "$build" && find . -name CTestTestfile.cmake -print0 | xargs -0 cp --parents -t "$stage/build" "${binaries[@]}")
tar -cf - -C "$stage" build lib | xz -T2 -6 > "$out/bundle.tar.xz"
rm -rf "$stage"
du -h "$out/bundle.tar.xz"
