#!/usr/bin/env bash
# A checkpoint written by 4 FSDP ranks resumes on 2 (train.grad_accum=2), and that one on a single process
# (train.grad_accum=4): the checkpoint files are the ones a single process writes, and a step takes the same
# 4 batches at every world size. Against one uninterrupted process with train.grad_accum=4: the 4-rank steps
# and checkpoint are bit-identical, the first resumed step's loss too (same weights, same batches), and later
# steps agree to rounding (the reduction order of 2 ranks x 2 micro-batches is not that of 4). The same again
# with dist.sharded_checkpoints, where each rank writes its own file and the next run reads its elements from
# the files that hold them.
set -euo pipefail
qtune=$1 src=$2 work=$3
golden=$src/tests/golden
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAILED: $*"; exit 1; }
numbers() { sed -E 's/"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*,//g; s/,"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*//g' "$1/metrics.jsonl"; }
loss_at() { grep "\"step\":$2[,}]" "$1/metrics.jsonl" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2; }

for variant in full qlora full:sharded qlora:sharded; do
  recipe=${variant%%:*} tag=${variant/:/_} sharded=false
  [ "$variant" != "$recipe" ] && sharded=true
  extra=""
  [ "$recipe" = qlora ] && extra=', "lora": {"rank": 4, "alpha": 8, "dropout": 0.05}'
  cat > "$work/$tag.json" <<JSON
{
  "model": {"path": "$golden/tiny_llama_sp"},
  "data": {"train": "$golden/tokenizers/train.txt", "seq_len": 32, "batch_size": 2},
  "optim": {"lr": 2e-3, "grad_clip": 0.5},
  "schedule": {"name": "constant"},
  "train": {"steps": 6, "save_every": 2, "seed": 9},
  "dist": {"sharded_checkpoints": $sharded}$extra
}
JSON
  run=("$qtune" run "$recipe" --config "$work/$tag.json")
  ref=$work/$tag.ref out=$work/$tag.resharded
  "${run[@]}" train.grad_accum=4 "output_dir=$ref" > "$ref.log" 2>&1 || { cat "$ref.log"; fail "$recipe: reference"; }
  "${run[@]}" --nproc 4 train.steps=2 "output_dir=$out" > "$out.4.log" 2>&1 || { cat "$out.4.log"; fail "$recipe: 4 ranks"; }
  "${run[@]}" --nproc 2 train.grad_accum=2 train.steps=4 train.resume=true "output_dir=$out" > "$out.2.log" 2>&1 ||
    { cat "$out.2.log"; fail "$recipe: resumed on 2 ranks"; }
  grep -q "resumed from .*step_2 at step 2 of 4" "$out.2.log" || { cat "$out.2.log"; fail "$recipe: 2 ranks did not resume"; }
  if $sharded; then
    # Each of the 4 ranks wrote its own file; the 2-rank checkpoint has 2 and resumes on one process below.
    ls "$out/checkpoints/step_4/shards/rank_1.safetensors" > /dev/null && [ ! -e "$out/checkpoints/step_4/shards/rank_2.safetensors" ] ||
      fail "$variant: the 2-rank checkpoint is not sharded in 2 files"
    [ ! -e "$out/checkpoints/step_4/model.safetensors" ] || fail "$variant: whole weights written too"
  fi
  "${run[@]}" train.grad_accum=4 train.resume=true "output_dir=$out" > "$out.1.log" 2>&1 ||
    { cat "$out.1.log"; fail "$recipe: resumed on one process"; }
  grep -q "resumed from .*step_4 at step 4 of 6" "$out.1.log" || { cat "$out.1.log"; fail "$recipe: 1 process did not resume"; }
  # A world size that cannot take 4 batches a step is refused, naming the fix.
  if "${run[@]}" --nproc 3 train.steps=8 train.resume=true "output_dir=$out" > "$out.3.log" 2>&1; then
    fail "$recipe: 3 ranks resumed a 4-batch step"
  fi
  grep -q "run with a number of ranks that divides 4" "$out.3.log" || { cat "$out.3.log"; fail "$recipe: no advice"; }

  diff <(numbers "$ref" | head -2) <(numbers "$out" | head -2) || fail "$recipe: 4-rank steps differ"
  [ "$(loss_at "$ref" 3)" = "$(loss_at "$out" 3)" ] || fail "$recipe: the first resumed step's loss differs"
  for step in 4 5 6; do
    awk -v a="$(loss_at "$ref" $step)" -v b="$(loss_at "$out" $step)" \
      'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * a) }' ||
      fail "$recipe: step $step loss $(loss_at "$out" $step) vs $(loss_at "$ref" $step)"
  done
  echo "$variant: 4 -> 2 -> 1 ranks resumed; step 6 loss $(loss_at "$out" 6) (uninterrupted: $(loss_at "$ref" 6))"
done
echo "fsdp reshard: ok"
