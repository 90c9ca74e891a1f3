#!/usr/bin/env bash
# `qtune run --nproc N device=cuda`: FSDP over NCCL between GPU ranks, each on its own GPU, with MPI for the
# host-side exchanges. Against one GPU with train.grad_accum=N, bit for bit (each step's loss and gradient norm,
# checkpoints with optimizer state, the final model): f32 full at 2 and 3 ranks, full with dist.offload (shards and
# optimizer state in host memory), and bf16 qlora with f32 masters at 2 ranks (from 3 ranks on, a bf16 sum across
# ranks rounds once where one GPU's accumulation rounds at each micro-batch). Then a run with a per-rank checkpoint
# resumes bit-identically, and two ranks given one GPU stop with an error naming it. Under the CUDA simulator each
# rank is a process simulating four GPUs (QTUNE_SIM_DEVICES=4); on real GPUs it needs three, else SKIPPED (77).
set -euo pipefail
qtune=$1 src=$2 work=$3 flavor=$4
golden=$src/tests/golden
if [ "$flavor" != sim ]; then
  gpus=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
  [ "$gpus" -ge 3 ] || { echo "SKIPPED: needs three GPUs, found ${gpus:-0}"; exit 77; }
fi
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAILED: $*"; exit 1; }
numbers() { sed -E 's/"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*,//g; s/,"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*//g' "$1/metrics.jsonl"; }
same_files() {  # DIR_A DIR_B WHAT
  local files
  files=$(cd "$1" && find checkpoints final -name '*.safetensors' | sort)
  [ -n "$files" ] || fail "$3: no safetensors written"
  [ "$files" = "$(cd "$2" && find checkpoints final -name '*.safetensors' | sort)" ] || fail "$3: other files"
  for f in $files; do cmp -s "$1/$f" "$2/$f" || fail "$3: $f differs"; done
}

cat > "$work/base.json" <<JSON
{
  "model": {"path": "$golden/tiny_llama_sp"},
  "device": "cuda",
  "data": {"train": "$golden/tokenizers/train.txt", "seq_len": 16, "batch_size": 2},
  "optim": {"lr": 2e-3, "weight_decay": 0.1, "grad_clip": 0.5},
  "schedule": {"warmup_steps": 1},
  "train": {"steps": 3, "save_every": 2, "seed": 5}
}
JSON
lora='lora.rank=4 lora.alpha=8 lora.dropout=0.05'
while read -r name recipe n on_ranks overrides; do  # on_ranks: the ranks' own override, or -
  [ "$on_ranks" = - ] && on_ranks=""
  one=$work/$name.one many=$work/$name.many
  # shellcheck disable=SC2086  # the overrides are words
  "$qtune" run "$recipe" --config "$work/base.json" $overrides "train.grad_accum=$n" "output_dir=$one" < /dev/null \
    > "$one.log" 2>&1 || { cat "$one.log"; fail "$name: one GPU"; }
  # shellcheck disable=SC2086
  "$qtune" run "$recipe" --config "$work/base.json" $overrides $on_ranks --nproc "$n" "output_dir=$many" < /dev/null \
    > "$many.log" 2>&1 ||
    { cat "$many.log"; fail "$name: $n GPU ranks"; }
  grep -q "FSDP: $n GPU ranks over NCCL" "$many.log" || { cat "$many.log"; fail "$name: no FSDP line"; }
  # Each rank trains on its own GPU; the run's config records device as given.
  grep -Eq '"device": ?"cuda"' "$many/config.json" || fail "$name: config.json does not record device=cuda"
  if [ "$name" = offload ]; then grep -q "offloaded to host memory" "$many.log" || fail "offload: not said"; fi
  diff <(numbers "$one") <(numbers "$many") || fail "$name: metrics differ"
  same_files "$one" "$many" "$name"
  echo "$name: $n GPU ranks = one GPU; $(numbers "$many" | tail -1)"
done <<RUNS  # mpirun reads standard input: the runs above read /dev/null instead
full full 2 -
full3 full 3 -
offload full 2 dist.offload=true
qlora_mixed qlora 2 - model.dtype=bf16 model.master_dtype=f32 $lora
RUNS

# A per-rank checkpoint at step 2, resumed: the same final model as the uninterrupted run.
whole=$work/sharded again=$work/sharded.again
"$qtune" run full --config "$work/base.json" --nproc 2 dist.sharded_checkpoints=true "output_dir=$whole" > "$whole.log" 2>&1 ||
  { cat "$whole.log"; fail "sharded checkpoints"; }
[ -e "$whole/checkpoints/step_2/shards/rank_1.safetensors" ] || fail "no per-rank checkpoint"
cp -r "$whole" "$again" && rm -rf "$again/final" "$again/checkpoints/step_3"
"$qtune" run full --config "$work/base.json" --nproc 2 train.resume=true "output_dir=$again" > "$again.log" 2>&1 ||
  { cat "$again.log"; fail "resumed from per-rank files"; }
grep -q "resumed from .*step_2 at step 2 of 3" "$again.log" || { cat "$again.log"; fail "did not resume"; }
diff <(numbers "$whole") <(numbers "$again") || fail "resumed: metrics differ"
cmp -s "$whole/final/model.safetensors" "$again/final/model.safetensors" || fail "resumed: final model differs"
cmp -s "$whole/final/model.safetensors" "$work/full.one/final/model.safetensors" || fail "sharded run: final model differs"
echo "per-rank checkpoint on GPU ranks: resumed bit-identically"

# `qtune plan --offload` against an offloaded run's measured device peak (rank 0's allocator statistics), within
# 10%, on plan_check.sh's 8-layer, hidden-256 base made here on the CPU.
"$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" "data.train=$golden/tokenizers/train.txt" data.eval= \
  "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 schedule.warmup_steps=1 \
  train.steps=1 model.config.num_hidden_layers=8 model.config.vocab_size=512 model.config.intermediate_size=704 \
  "output_dir=$work/make_base" < /dev/null > "$work/make_base.log" 2>&1 || { cat "$work/make_base.log"; fail "base"; }
"$qtune" run full --config "$work/base.json" "model.path=$work/make_base/final" data.seq_len=64 data.batch_size=4 \
  train.steps=1 train.save_every=0 dist.offload=true --nproc 2 "output_dir=$work/planned" < /dev/null \
  > "$work/planned.log" 2>&1 || { cat "$work/planned.log"; fail "the offloaded run for the plan"; }
measured=$(grep -o '"peak_mem_bytes":[0-9]*' "$work/planned/metrics.jsonl" | cut -d: -f2 | sort -n | tail -1)
"$qtune" plan --model "$work/make_base/final" --recipe full --nproc 2 --seq 64 --batch 4 --dtype f32 --offload \
  > "$work/planned.plan" || fail "plan --offload"
cat "$work/planned.plan"
predicted=$(sed -nE 's/.* per rank, ([0-9]+) bytes \(counting.*/\1/p' "$work/planned.plan")
echo "offloaded: measured $measured bytes on the GPU, predicted $predicted"
awk -v m="$measured" -v p="$predicted" 'BEGIN { d = p - m; if (d < 0) d = -d; exit !(m > 0 && d <= 0.10 * m) }' ||
  fail "plan --offload is off by more than 10%"

# One GPU for two ranks: NCCL's rule, one GPU per rank, stops both with the reason.
if [ "$flavor" = sim ]; then
  if QTUNE_SIM_DEVICES=1 "$qtune" run full --config "$work/base.json" --nproc 2 "output_dir=$work/one_gpu" \
    > "$work/one_gpu.log" 2>&1; then
    fail "two ranks on one GPU trained"
  fi
  grep -q "both use cuda:0" "$work/one_gpu.log" || { cat "$work/one_gpu.log"; fail "no reason given"; }
fi
echo "fsdp gpu ranks: ok"
