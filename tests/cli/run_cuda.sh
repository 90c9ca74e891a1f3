#!/usr/bin/env bash
# `qtune run full` with device=cuda from the command line, in bf16 (attention on tensor cores) with rowwise
# float8 (cuBLASLt fp8 GEMMs with outer-vector scales), then `qtune generate --device cuda` on the result.
# Exits 77 (SKIPPED) without a GPU; CI runs it under the simulator.
set -euo pipefail
qtune=$1 src=$2 out=$3
golden=$src/tests/golden
"$src/tests/cli/skip_without_gpu.sh" "$qtune" version || exit $?
rm -rf "$out"
"$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" device=cuda model.dtype=bf16 fp8.recipe=rowwise \
  "data.train=$golden/tokenizers/train.txt" data.eval= "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" \
  model.config.num_hidden_layers=1 data.seq_len=16 data.batch_size=2 schedule.warmup_steps=1 train.steps=2 \
  train.log_every=1 "output_dir=$out"
"$qtune" generate --device cuda --model "$out/final" --prompt "The" --max-new-tokens 4 --temperature 0
echo "run and generate on cuda: ok"
