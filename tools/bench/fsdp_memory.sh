#!/usr/bin/env bash
# Peak training memory of one FSDP rank against the number of ranks (docs/distributed.md): `qtune run full
# --nproc N` on a 22.6M-parameter Llama (hidden 512, 8 layers, AdamW, f32), 2 steps of 2 x 32 tokens so that
# activations are small beside parameters, gradients and optimizer state. Prints a table: N, the training
# peak of rank 0 (allocator statistics, after sharding), the model state it holds (parameters + gradients +
# AdamW moments = 4 x the whole model / N), and the rest: gathered blocks, their gradients and buffers.
#   tools/bench/fsdp_memory.sh [QTUNE] [N...]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
qtune=${1:-$here/build/default/tools/qtune}
shift || true
counts=("${@:-1 2 3 4}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
golden=$here/tests/golden
args=(--config "$here/configs/tiny_shakespeare_full.json" "data.train=$golden/tokenizers/train.txt" data.eval=
  "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 schedule.warmup_steps=1
  train.steps=2 model.config.hidden_size=512 model.config.intermediate_size=1536 model.config.num_hidden_layers=8)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "| ranks | rank 0 keeps (MiB) | training peak of rank 0 (MiB) | model state: 4 x model / N (MiB) | the rest (MiB) |"
echo "|---|---|---|---|---|"
for n in ${counts[*]}; do
  "$qtune" run full "${args[@]}" --nproc "$n" "output_dir=$work/n$n" > "$work/n$n.log" 2>&1 ||
    { cat "$work/n$n.log"; exit 1; }
  peak=$(grep -o '"peak_mem_bytes":[0-9]*' "$work/n$n/metrics.jsonl" | tail -1 | cut -d: -f2)
  model=$(sed -nE "s/.*of the model's ([0-9.]+) MiB.*/\1/p" "$work/n$n.log")
  kept=$(sed -nE "s/.*rank 0 keeps ([0-9.]+) MiB.*/\1/p" "$work/n$n.log")
  state=$(awk -v m="$model" -v n="$n" 'BEGIN { printf "%.1f", 4 * m / n }')
  echo "| $n | $kept | $(mib "$peak") | $state | $(awk -v p="$(mib "$peak")" -v s="$state" 'BEGIN { printf "%.1f", p - s }') |"
done
echo
# The tied embedding is 1024 x 512 f32 = 2 MiB; the rest is 8 equal decoder layers.
echo "(whole model: $model MiB; one decoder layer: $(awk -v m="$model" 'BEGIN { printf "%.1f", (m - 2) / 8 }') MiB)"
