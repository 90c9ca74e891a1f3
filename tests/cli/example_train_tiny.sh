#!/usr/bin/env bash
# tools/examples/train_tiny trains a small Llama on a text file: its loss must fall, and the model
# directory it saves must load in `qtune generate`.
set -euo pipefail
train_tiny=$1 qtune=$2 text=$3 out=$4
rm -rf "$out"
log=$("$train_tiny" "$text" "$out" 60)
echo "$log"
first=$(grep -m1 '^step' <<<"$log" | awk '{print $4}')
last=$(grep '^step' <<<"$log" | tail -1 | awk '{print $4}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || { echo "loss did not fall: $first -> $last"; exit 1; }
"$qtune" generate --model "$out" --prompt "The" --max-new-tokens 8 --temperature 0
