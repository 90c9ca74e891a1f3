#!/usr/bin/env bash
# Each failure mode of collective_failures.cpp under `mpirun -np 2`: the job must exit non-zero within a
# bounded time, with a message that names the rank and the collective.
set -uo pipefail
mpirun=$1 probe=$2
fail() { echo "FAILED: $*"; exit 1; }
expect() {  # mode, most seconds, message fragments...
  local mode=$1 limit=$2; shift 2
  local start=$SECONDS out
  out=$(timeout 120 "$mpirun" -np 2 --oversubscribe "$probe" "$mode" 2>&1)
  local rc=$? took=$((SECONDS - start))
  echo "--- $mode: exit $rc after ${took}s"
  echo "$out"
  [ $rc -ne 0 ] || fail "$mode: the job exited 0"
  [ $rc -ne 124 ] || fail "$mode: the job hung (killed by timeout after 120 s)"
  [ $took -le "$limit" ] || fail "$mode: took ${took}s, more than ${limit}s"
  for fragment in "$@"; do
    grep -qF -- "$fragment" <<< "$out" || fail "$mode: the output lacks: $fragment"
  done
}
expect deadline 20 "rank 0: all_reduce (sum) of 4 f32 (collective #2) did not complete within 1 s"
expect mismatch 20 "the ranks call different collectives: collective #2: rank 0 calls all_reduce (sum) of 4 f32, rank 1 calls all_gather of 2 f32 per rank"
expect death 30 "rank 0: stopped while waiting in all_reduce (sum) of 4 f32 (collective #2)"
echo "collective failures: ok"
