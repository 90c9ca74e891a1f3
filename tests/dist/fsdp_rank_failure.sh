#!/usr/bin/env bash
# FSDP training when a rank stops answering or dies: every rank exits non-zero within a bounded time with a
# message naming the collective, and output_dir keeps its last complete checkpoint, which a new run resumes.
#   stopped rank (SIGSTOP): the others give up after dist.timeout_s (5 s here);
#   killed rank (SIGKILL): mpirun ends the job.
# DEVICE (cpu when not given) cuda: GPU ranks over NCCL, where a stuck collective aborts the NCCL group first.
set -uo pipefail
qtune=$1 src=$2 work=$3 device=${4:-cpu}
golden=$src/tests/golden
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAILED: $*"; exit 1; }

# The processes whose last argument is output_dir=$1 (mpirun and its ranks), from /proc: no procps needed.
run_pids() {
  local d cmd
  for d in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
    case "$cmd" in *" output_dir=$1 ") echo "${d#/proc/}" ;; esac
  done
}
# The pid of rank $2 of the run writing into $1.
rank_pid() {
  for p in $(run_pids "$1"); do
    # grep reads to the end (no -q): a grep that quits at the match can leave tr killed by SIGPIPE, which
    # pipefail turns into a miss on a loaded machine.
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -x "OMPI_COMM_WORLD_RANK=$2" > /dev/null; then
      echo "$p"
      return
    fi
  done
}

for how in STOP KILL; do
  out=$work/$how
  "$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" --nproc 2 "data.train=$golden/tokenizers/train.txt" \
    "device=$device" data.eval= "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 \
    schedule.warmup_steps=1 train.steps=100000 train.save_every=2 train.log_every=1 dist.timeout_s=5 \
    "output_dir=$out" > "$out.log" 2>&1 &
  job=$!
  for _ in $(seq 600); do
    [ -d "$out/checkpoints/step_4" ] && break
    kill -0 $job 2>/dev/null || { cat "$out.log"; fail "$how: the run ended early"; }
    sleep 0.1
  done
  victim=$(rank_pid "$out" 1)
  [ -n "$victim" ] || { cat "$out.log"; fail "$how: rank 1 not found"; }
  start=$(date +%s)
  kill -$how "$victim"
  for _ in $(seq 600); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
  if kill -0 $job 2>/dev/null; then
    kill -CONT "$victim" 2>/dev/null; kill -KILL $(run_pids "$out") 2>/dev/null; fail "$how: still running after 60 s"
  fi
  wait $job && fail "$how: the job exited 0"
  took=$(( $(date +%s) - start ))
  kill -KILL $(run_pids "$out") 2>/dev/null || true  # a stopped rank mpirun could not end
  echo "--- $how: job ended $took s after rank 1 was stopped/killed; its last lines:"
  tail -n 12 "$out.log"
  [ "$took" -le 30 ] || fail "$how: took $took s"
  if [ "$how" = STOP ]; then
    grep -Eq "rank 0: .*(all_gather|reduce_scatter|all_reduce|barrier|broadcast)" "$out.log" ||
      fail "$how: no message naming the collective"
  fi
  # The newest complete checkpoint resumes on one process (2 ranks x 1 batch = grad_accum 2).
  last=$(ls "$out/checkpoints" | grep -E '^step_[0-9]+$' | sort -t_ -k2 -n | tail -1)
  [ -n "$last" ] || fail "$how: no complete checkpoint left"
  "$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" "data.train=$golden/tokenizers/train.txt" \
    data.eval= "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 \
    "device=$device" schedule.warmup_steps=1 "train.steps=$(( ${last#step_} + 1 ))" train.grad_accum=2 train.resume=true \
    "output_dir=$out" > "$out.resume.log" 2>&1 || { cat "$out.resume.log"; fail "$how: resume"; }
  grep -q "resumed from .*$last" "$out.resume.log" || { cat "$out.resume.log"; fail "$how: did not resume $last"; }
done
echo "fsdp rank failure: ok"
