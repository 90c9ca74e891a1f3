#!/usr/bin/env bash
# `qtune run --nproc N` (FSDP over N MPI ranks) against one process with train.grad_accum=N, for every recipe:
# the same global batches, so the same numbers bit for bit. Compared: each step's loss and gradient norm, the
# eval loss, and every safetensors file written (checkpoints with optimizer state, final model or adapter).
# LoRA dropout is on: rank r draws the masks one process draws for micro-batch r. full+fp8 trains through
# float8 GEMMs (rowwise scales).
set -euo pipefail
qtune=$1 src=$2 work=$3 n=$4
golden=$src/tests/golden
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAILED: $*"; exit 1; }

# config RECIPE OPTION NAME: the run config of a recipe, its own sections only (OPTION fp8: float8 GEMMs).
config() {
  local recipe=$1 extra=""
  if [ "$2" = fp8 ]; then extra+=', "fp8": {"recipe": "rowwise"}'; fi
  case $recipe in lora | qlora | qat_lora)
    extra+=', "lora": {"rank": 4, "alpha": 8, "dropout": 0.05, "targets": ["q_proj", "v_proj", "gate_proj", "down_proj"]}' ;;
  esac
  case $recipe in qat | qat_lora) extra+=', "quant": {"fake_quant_after_n_steps": 1}' ;; esac
  cat > "$work/$3.json" <<JSON
{
  "model": {"path": "$golden/tiny_llama_sp"},
  "data": {"train": "$golden/tokenizers/train.txt", "eval": "$golden/tokenizers/train.txt", "seq_len": 32,
           "batch_size": 2},
  "optim": {"lr": 2e-3, "weight_decay": 0.1, "grad_clip": 0.5},
  "schedule": {"warmup_steps": 1},
  "train": {"steps": 3, "save_every": 2, "eval_batches": 2, "seed": 5}$extra
}
JSON
}
# The numbers a run reports, without its timings.
numbers() { sed -E 's/"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*,//g; s/,"(elapsed_s|tokens_per_s|peak_mem_bytes)":[^,}]*//g' "$1/metrics.jsonl"; }

for variant in full full+fp8 lora qlora qat qat_lora; do
  recipe=${variant%+*}
  one=$work/$variant.one many=$work/$variant.many
  config "$recipe" "${variant#*+}" "$variant"
  "$qtune" run "$recipe" --config "$work/$variant.json" "train.grad_accum=$n" "output_dir=$one" > "$one.log" 2>&1 ||
    { cat "$one.log"; fail "$variant: one process"; }
  "$qtune" run "$recipe" --config "$work/$variant.json" --nproc "$n" "output_dir=$many" > "$many.log" 2>&1 ||
    { cat "$many.log"; fail "$variant: $n ranks"; }
  grep -q "FSDP: $n ranks" "$many.log" || { cat "$many.log"; fail "$variant: no FSDP line"; }
  # Every recipe here loads model.path sharded: each rank reads only its pieces of the decoder layers.
  grep -q "reading only its pieces of the decoder layers" "$many.log" || { cat "$many.log"; fail "$variant: loaded whole"; }
  [ "$(grep -c '^done:' "$many.log")" -eq 1 ] || { cat "$many.log"; fail "$variant: expected one summary (rank 0's)"; }
  diff <(numbers "$one") <(numbers "$many") || fail "$variant: metrics differ"
  files=$(cd "$one" && find checkpoints final -name '*.safetensors' | sort)
  [ -n "$files" ] || fail "$variant: no safetensors written"
  [ "$files" = "$(cd "$many" && find checkpoints final -name '*.safetensors' | sort)" ] || fail "$variant: other files"
  for f in $files; do cmp -s "$one/$f" "$many/$f" || fail "$variant: $f differs"; done
  echo "$variant: $n ranks = one process, $(echo "$files" | wc -l) files identical; $(numbers "$many" | tail -2 | head -1)"
done
echo "fsdp recipes at $n ranks: ok"
