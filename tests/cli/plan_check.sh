#!/usr/bin/env bash
# `qtune plan` against measured runs: the predicted peak of a rank is within 10% of the training peak rank 0
# reports (allocator statistics) for one-process full (f32, bf16, bf16 with f32 masters) and qat (8da4w) runs and
# 2-rank FSDP full, bf16 full with f32 masters, qlora, qat and qat_lora runs; then the plan
# of Llama-2-70B QLoRA on 2 ranks is printed.
set -euo pipefail
qtune=$1 src=$2 work=$3
golden=$src/tests/golden
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAILED: $*"; exit 1; }

check() {  # name recipe nproc [dtype [master_dtype]]
  local name=$1 recipe=$2 n=$3 dtype=${4:-f32} master=${5:-} extra=""
  case $recipe in qlora | qat_lora) extra=', "lora": {"rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}' ;; esac
  cat > "$work/$name.json" <<JSON
{
  "model": {"path": "$work/base", "dtype": "$dtype", "master_dtype": "$master"},
  "data": {"train": "$golden/tokenizers/train.txt", "seq_len": 128, "batch_size": 4},
  "schedule": {"warmup_steps": 1},
  "train": {"steps": 3}$extra
}
JSON
  local launch=()
  [ "$n" -gt 1 ] && launch=(--nproc "$n")
  "$qtune" run "$recipe" --config "$work/$name.json" "${launch[@]}" "output_dir=$work/$name" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "$name: run"; }
  local measured predicted
  measured=$(grep -o '"peak_mem_bytes":[0-9]*' "$work/$name/metrics.jsonl" | cut -d: -f2 | sort -n | tail -1)
  "$qtune" plan --model "$work/base" --recipe "$recipe" --nproc "$n" --seq 128 --batch 4 --dtype "$dtype" \
    ${master:+--master-dtype "$master"} > "$work/$name.plan" || fail "$name: plan"
  predicted=$(sed -nE 's/.* per rank, ([0-9]+) bytes.*/\1/p' "$work/$name.plan")
  cat "$work/$name.plan"
  echo "$name: measured $measured bytes, predicted $predicted"
  awk -v m="$measured" -v p="$predicted" 'BEGIN { d = p - m; if (d < 0) d = -d; exit !(d <= 0.10 * m) }' ||
    fail "$name: the prediction is off by more than 10%"
}

# A base of 8 layers, hidden 256: large enough that weights, optimizer state and activations all count.
"$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" "data.train=$golden/tokenizers/train.txt" data.eval= \
  "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 schedule.warmup_steps=1 \
  train.steps=1 model.config.num_hidden_layers=8 model.config.vocab_size=512 model.config.intermediate_size=704 \
  "output_dir=$work/make_base" \
  > "$work/make_base.log" 2>&1 || { cat "$work/make_base.log"; fail "base"; }
cp -r "$work/make_base/final" "$work/base"
check full_1 full 1
check full_2 full 2
check qlora_2 qlora 2
check qat_1 qat 1
check bf16_1 full 1 bf16
check mixed_1 full 1 bf16 f32
check mixed_2 full 2 bf16 f32
check qat_2 qat 2
check qat_lora_2 qat_lora 2
"$qtune" plan --model "$golden/llama/llama2_70b_config.json" --recipe qlora --nproc 2 --seq 2048 --batch 1 --dtype bf16 \
  --activation-checkpointing --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
echo "plan check: ok"
