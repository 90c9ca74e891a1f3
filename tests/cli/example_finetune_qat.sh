#!/usr/bin/env bash
# tools/examples/finetune_qat fine-tunes a model made by train_tiny through 8da4w fake quantization: its
# training loss must fall, it must report both held-out losses, and the float directory it saves must load
# in `qtune generate`.
set -euo pipefail
train_tiny=$1 finetune_qat=$2 qtune=$3 text=$4 work=$5
rm -rf "$work"
"$train_tiny" "$text" "$work/base" 40 >/dev/null
log=$("$finetune_qat" "$work/base" "$text" "$work/qat" 60)
echo "$log"
grep -q '^QAT: 14 linears fake-quantized (8da4w, group 32)' <<<"$log" || { echo "prepare line missing"; exit 1; }
grep -q '^held-out loss of the 8da4w model: [0-9.]* after QAT (PTQ before: [0-9.]*)' <<<"$log" || {
  echo "result line missing"
  exit 1
}
first=$(grep -m1 '^step' <<<"$log" | awk '{print $4}')
last=$(grep '^step' <<<"$log" | tail -1 | awk '{print $4}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || { echo "loss did not fall: $first -> $last"; exit 1; }
"$qtune" generate --model "$work/qat" --prompt "The" --max-new-tokens 8 --temperature 0
