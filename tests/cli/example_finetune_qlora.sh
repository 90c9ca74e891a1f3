#!/usr/bin/env bash
# tools/examples/finetune_qlora fine-tunes a model made by train_tiny over an NF4 base: its mean training loss
# must fall, it must report both held-out losses and save a PEFT adapter that `qtune generate --adapter` applies.
# Started by mpirun as two ranks it shards the model (FSDP): rank 0 alone reports and saves the adapter.
# DEVICE (default cpu) cuda: the same on a GPU, whose losses over 6 steps must match the CPU's within the GPU's
# summation order (the simulator runs 60 steps too slowly), and the two ranks each on its own GPU over NCCL (two
# GPUs needed, else SKIPPED; the simulator provides them). `qtune generate` applies the adapters on the CPU.
set -euo pipefail
train_tiny=$1 finetune_qlora=$2 qtune=$3 text=$4 work=$5 device=${6:-cpu}
if [ "$device" != cpu ]; then
  gpus=$("$qtune" version | sed -nE 's/^CUDA backend: .*; ([0-9]+) (simulated )?GPUs?.*/\1/p')
  [ "${gpus:-0}" -ge 2 ] || { echo "SKIPPED: needs two CUDA devices, found ${gpus:-0}"; exit 77; }
fi
rm -rf "$work"
"$train_tiny" "$text" "$work/base" 40 >/dev/null
# The numbers of a run's report: the mean training losses and both held-out losses.
losses() { grep -E '^(mean training loss|held-out loss after)' <<<"$1" | grep -oE '[0-9]+\.[0-9]{4}' | tr '\n' ' '; }
if [ "$device" = cpu ]; then
  log=$("$finetune_qlora" "$work/base" "$text" "$work/adapter" 60)
else
  log=$("$finetune_qlora" "$work/base" "$text" "$work/adapter" 6 "$device")
  cpu_log=$("$finetune_qlora" "$work/base" "$text" "$work/adapter_cpu" 6 cpu)
  read -ra gpu_numbers <<<"$(losses "$log")"
  read -ra cpu_numbers <<<"$(losses "$cpu_log")"
  [ "${#gpu_numbers[@]}" -eq 4 ] && [ "${#cpu_numbers[@]}" -eq 4 ] || { echo "losses missing"; exit 1; }
  for i in 0 1 2 3; do
    awk -v g="${gpu_numbers[$i]}" -v c="${cpu_numbers[$i]}" 'BEGIN { d = g - c; exit !(d <= 2e-3 && d >= -2e-3) }' ||
      { echo "the GPU's losses ${gpu_numbers[*]} differ from the CPU's ${cpu_numbers[*]}"; exit 1; }
  done
fi
echo "$log"
grep -q "^device: $device" <<<"$log" || { echo "device line missing (wanted $device)"; exit 1; }
grep -q '^QLoRA: NF4 base, 14 projections with rank-8 adapters' <<<"$log" || { echo "setup line missing"; exit 1; }
grep -q '^held-out loss after QLoRA: [0-9.]* (before: [0-9.]*)' <<<"$log" || { echo "result line missing"; exit 1; }
means=$(grep '^mean training loss: ' <<<"$log") || { echo "mean loss line missing"; exit 1; }
if [ "$device" = cpu ]; then
  first=$(awk '{print $4}' <<<"$means")
  last=$(awk '{print $10}' <<<"$means")
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || { echo "training loss did not fall: $first -> $last"; exit 1; }
fi
for f in adapter_model.safetensors adapter_config.json; do
  [ -f "$work/adapter/$f" ] || { echo "missing $f"; exit 1; }
done
"$qtune" generate --model "$work/base" --adapter "$work/adapter" --prompt "The" --max-new-tokens 8 --temperature 0
if [ -n "${MPIEXEC:-}" ]; then
  out=$("$MPIEXEC" -np 2 --oversubscribe "$finetune_qlora" "$work/base" "$text" "$work/mpi" 6 "$device" 2>&1) ||
    { echo "$out"; echo "two ranks failed"; exit 1; }
  echo "$out"
  grep -q "^FSDP: 2 ranks" <<<"$out" || { echo "no FSDP line"; exit 1; }
  if [ "$device" != cpu ]; then
    grep -q "^FSDP: 2 ranks, each on its own GPU (NCCL)" <<<"$out" || { echo "the ranks are not on GPUs"; exit 1; }
  fi
  [ "$(grep -c '^held-out loss after QLoRA' <<<"$out")" -eq 1 ] || { echo "expected rank 0's report only"; exit 1; }
  [ -f "$work/mpi/adapter_model.safetensors" ] || { echo "two ranks saved no adapter"; exit 1; }
  "$qtune" generate --model "$work/base" --adapter "$work/mpi" --prompt "The" --max-new-tokens 4 --temperature 0
fi
echo "finetune_qlora: ok"
