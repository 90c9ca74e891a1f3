#!/usr/bin/env bash
# tools/examples/finetune_qlora fine-tunes a model made by train_tiny over an NF4 base: its mean training loss
# must fall, it must report both held-out losses and save a PEFT adapter that `qtune generate --adapter` applies.
# Started by mpirun as two ranks it shards the model (FSDP): rank 0 alone reports and saves the adapter.
set -euo pipefail
train_tiny=$1 finetune_qlora=$2 qtune=$3 text=$4 work=$5
rm -rf "$work"
"$train_tiny" "$text" "$work/base" 40 >/dev/null
log=$("$finetune_qlora" "$work/base" "$text" "$work/adapter" 60)
echo "$log"
grep -q '^QLoRA: NF4 base, 14 projections with rank-8 adapters' <<<"$log" || { echo "setup line missing"; exit 1; }
grep -q '^held-out loss after QLoRA: [0-9.]* (before: [0-9.]*)' <<<"$log" || { echo "result line missing"; exit 1; }
means=$(grep '^mean training loss: ' <<<"$log") || { echo "mean loss line missing"; exit 1; }
first=$(awk '{print $4}' <<<"$means")
last=$(awk '{print $10}' <<<"$means")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || { echo "training loss did not fall: $first -> $last"; exit 1; }
for f in adapter_model.safetensors adapter_config.json; do
  [ -f "$work/adapter/$f" ] || { echo "missing $f"; exit 1; }
done
"$qtune" generate --model "$work/base" --adapter "$work/adapter" --prompt "The" --max-new-tokens 8 --temperature 0
if [ -n "${MPIEXEC:-}" ]; then
  out=$("$MPIEXEC" -np 2 --oversubscribe "$finetune_qlora" "$work/base" "$text" "$work/mpi" 6 2>&1) ||
    { echo "$out"; echo "two ranks failed"; exit 1; }
  echo "$out"
  grep -q "^FSDP: 2 ranks" <<<"$out" || { echo "no FSDP line"; exit 1; }
  [ "$(grep -c '^held-out loss after QLoRA' <<<"$out")" -eq 1 ] || { echo "expected rank 0's report only"; exit 1; }
  [ -f "$work/mpi/adapter_model.safetensors" ] || { echo "two ranks saved no adapter"; exit 1; }
  "$qtune" generate --model "$work/base" --adapter "$work/mpi" --prompt "The" --max-new-tokens 4 --temperature 0
fi
echo "finetune_qlora: ok"
