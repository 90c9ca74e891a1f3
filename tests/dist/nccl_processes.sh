#!/usr/bin/env bash
# nccl_processes.cpp under `mpirun -np N`: GPU ranks as separate processes over NCCL (the CUDA simulator's, which
# meets them through /dev/shm). Every collective at 2 and 3 ranks; a disagreement and a late rank end the job
# within a bounded time, non-zero, naming the collective; and no meeting directory is left behind by a job that
# ended cleanly.
set -uo pipefail
mpirun=$1 probe=$2
# Under AddressSanitizer: Open MPI's plugins have no frame pointers, so the fast unwinder stops inside them and
# LeakSanitizer cannot match their allocations to lsan_mpi.supp; the slow one reaches libmpi's frames.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
fail() { echo "FAILED: $*"; exit 1; }
meetings() { ls -d /dev/shm/qtune-sim-nccl-* 2> /dev/null | wc -l; }
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
  before=$(meetings)
  run "$n" collectives 60
  [ $rc -eq 0 ] || fail "collectives on $n ranks: exit $rc"
  [ "$(grep -c "collectives ok on cuda:" <<< "$out")" -eq "$n" ] || fail "collectives on $n ranks: not every rank passed"
  [ "$(meetings)" -le "$before" ] || fail "collectives on $n ranks: a meeting directory was left in /dev/shm"
done
run 2 mismatch 30
[ $rc -ne 0 ] || fail "mismatch: the job exited 0"
grep -q "NCCL ranks disagree at collective #[0-9]*: rank 0 calls ncclAllReduce of 4 elements.*rank 1 calls ncclAllGather of 2 elements" <<< "$out" ||
  fail "mismatch: the calls are not named"
run 2 late 30
[ $rc -ne 0 ] || fail "late: the job exited 0"
grep -q "rank 0: .*on rank 0: rank(s) 1 never reached it within 2 s" <<< "$out" || fail "late: no message naming the missing rank"
echo "nccl processes: ok"
