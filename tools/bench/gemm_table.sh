#!/usr/bin/env bash
# Refreshes the GEMM table of tools/bench/README.md: prints the machine, then runs the GEMM benchmark
# twice (the spread between the runs says how quiet the machine was). Paste the output into the README.
#   tools/bench/gemm_table.sh [path/to/qtune_bench_gemm] [extra qtune_bench_gemm args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-}
if [[ -z "$bin" ]]; then
  for candidate in "$root/build/default/tools/bench/qtune_bench_gemm" "$root/build/tools/bench/qtune_bench_gemm"; do
    [[ -x "$candidate" ]] && bin=$candidate && break
  done
fi
[[ -n "$bin" && -x "$bin" ]] || { echo "qtune_bench_gemm not found; build first or pass its path" >&2; exit 1; }
shift $(( $# > 0 ? 1 : 0 ))

echo '```'
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "command: $bin $*"
echo "cpu:     $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores visible"
echo "flags:   $(grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; anything near the core count means noisy numbers)"
for run in 1 2; do
  echo
  echo "--- run $run ---"
  "$bin" "$@"
done
echo '```'
