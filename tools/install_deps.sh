#!/usr/bin/env bash
# Installs the Debian 12 packages qtune builds and tests with, skipping those already present (so it
# is quick, and needs no root, on a machine that has them all). The CUDA toolkit is not a Debian
# package: install NVIDIA's, and the build picks it up from /usr/local/cuda.
set -euo pipefail

packages=(
  cmake ninja-build ccache g++ python3 clang-14
  libeigen3-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev
  nlohmann-json3-dev doctest-dev libcli11-dev libfmt-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin libsentencepiece-dev libpcre2-dev
  fortunes gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
