#!/usr/bin/env bash
# nccl_processes.cpp under `mpirun -np N`: GPU ranks as separate processes over NCCL (the CUDA simulator's, which
# meets them through /dev/shm). Every collective at 2 and 3 ranks; a disagreement and a late rank end the job
# within a bounded time, non-zero, naming the collective; a job that ended cleanly leaves no meeting directory
# behind, and the next job sweeps those of jobs that failed. The ranks meet in WORK (QTUNE_SIM_NCCL_DIR).
set -uo pipefail
mpirun=$1 probe=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
export QTUNE_SIM_NCCL_DIR=$work
# Under AddressSanitizer: Open MPI's plugins have no frame pointers, so the fast unwinder stops inside them and
# LeakSanitizer cannot match their allocations to lsan_mpi.supp; the slow one reaches libmpi's frames.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
fail() { echo "FAILED: $*"; exit 1; }
meetings() { find "$work" -mindepth 1 -maxdepth 1 -name 'qtune-sim-nccl-*' | wc -l; }
run() {  # ranks, mode, most seconds: sets out and rc
  local start=$SECONDS
  out=$(timeout 120 "$mpirun" -np "$1" --oversubscribe "$probe" "$2" 2>&1)
  rc=$?
  took=$((SECONDS - start))
  echo "--- $2 on $1 ranks: exit $rc after ${took}s"
  echo "$out"
  [ $rc -ne 124 ] || fail "$2: the job hung (killed by timeout after 120 s)"
  [ $took -le "$3" ] || fail "$2: took ${took}s, more than $3 s"
}
for n in 2 3; do
  run "$n" collectives 60
  [ $rc -eq 0 ] || fail "collectives on $n ranks: exit $rc"
  [ "$(grep -c "collectives ok on cuda:" <<< "$out")" -eq "$n" ] || fail "collectives on $n ranks: not every rank passed"
  [ "$(meetings)" -eq 0 ] || fail "collectives on $n ranks: a meeting directory was left in $work"
done
run 2 mismatch 30
[ $rc -ne 0 ] || fail "mismatch: the job exited 0"
grep -q "NCCL ranks disagree at collective #[0-9]*: rank 0 calls ncclAllReduce of 4 elements.*rank 1 calls ncclAllGather of 2 elements" <<< "$out" ||
  fail "mismatch: the calls are not named"
run 2 late 30
[ $rc -ne 0 ] || fail "late: the job exited 0"
grep -q "rank 0: .*on rank 0: rank(s) 1 never reached it within 2 s" <<< "$out" || fail "late: no message naming the missing rank"
# Rank 1 was killed asleep, never leaving: its job's directory stays until the next job's start sweeps it.
[ "$(meetings)" -eq 1 ] || fail "late: expected the killed job's meeting directory, found $(meetings)"
run 2 collectives 60
[ $rc -eq 0 ] || fail "collectives after the failures: exit $rc"
[ "$(meetings)" -eq 0 ] || fail "the killed job's meeting directory was not swept"
echo "nccl processes: ok"
