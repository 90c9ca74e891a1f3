#!/usr/bin/env bash
# `qtune run --nproc N` (FSDP over N MPI ranks) against one process with train.grad_accum=N, for every recipe:
# the same global batches, so the same numbers bit for bit. Compared: each step's loss and gradient norm, the
# eval loss, and every safetensors file written (checkpoints with optimizer state, final model or adapter).
# LoRA dropout is on: rank r draws the masks one process draws for micro-batch r. full+fp8 trains through
# float8 GEMMs (rowwise scales); +mixed trains a bf16 model with f32 masters (model.master_dtype=f32), which each
# rank keeps for its own pieces and checkpoints as optimizer state.
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

for variant in full full+fp8 full+mixed lora qlora qlora+mixed qat qat_lora; do
  recipe=${variant%+*} overrides=()
  one=$work/$variant.one many=$work/$variant.many
  config "$recipe" "${variant#*+}" "$variant"
  [ "${variant#*+}" = mixed ] && overrides=(model.dtype=bf16 model.master_dtype=f32)
  "$qtune" run "$recipe" --config "$work/$variant.json" "${overrides[@]}" "train.grad_accum=$n" "output_dir=$one" \
    > "$one.log" 2>&1 || { cat "$one.log"; fail "$variant: one process"; }
  "$qtune" run "$recipe" --config "$work/$variant.json" "${overrides[@]}" --nproc "$n" "output_dir=$many" > "$many.log" 2>&1 ||
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
  if [ "${variant#*+}" = mixed ]; then
    grep -aq '"state.0.master"' "$many/checkpoints/step_2/optimizer.safetensors" || fail "$variant: no f32 masters saved"
    # Resumed at step 2 from the consolidated checkpoint, and from one written as a file per rank: the masters come
    # back, so the run ends as the uninterrupted one did, bit for bit.
    for kind in whole sharded; do
      full=$many again=$work/$variant.$kind.again
      if [ $kind = sharded ]; then
        full=$work/$variant.sharded
        "$qtune" run "$recipe" --config "$work/$variant.json" "${overrides[@]}" --nproc "$n" dist.sharded_checkpoints=true \
          "output_dir=$full" > "$full.log" 2>&1 || { cat "$full.log"; fail "$variant: sharded checkpoints"; }
        [ -e "$full/checkpoints/step_2/shards/index.json" ] || fail "$variant: no sharded checkpoint"
      fi
      cp -r "$full" "$again" && rm -rf "$again/final" "$again/checkpoints/step_3"
      "$qtune" run "$recipe" --config "$work/$variant.json" "${overrides[@]}" --nproc "$n" train.resume=true \
        "output_dir=$again" > "$again.log" 2>&1 || { cat "$again.log"; fail "$variant: resumed from $kind"; }
      grep -q "resumed from .*step_2 at step 2 of 3" "$again.log" || { cat "$again.log"; fail "$variant: did not resume"; }
      diff <(numbers "$one") <(numbers "$again") || fail "$variant: resumed from $kind: metrics differ"
      for f in $(cd "$one" && find final -name '*.safetensors'); do
        cmp -s "$one/$f" "$again/$f" || fail "$variant: resumed from $kind: $f differs"
      done
    done
    # dist.reduce_dtype=f32: the ranks' bf16 gradients summed in f32 and rounded once. From 3 ranks on that is another
    # sum than bf16's rank-order one (2 values round once either way): the steps differ, to rounding.
    if [ "$n" -ge 3 ]; then
      wide=$work/$variant.reduce_f32
      "$qtune" run "$recipe" --config "$work/$variant.json" "${overrides[@]}" --nproc "$n" dist.reduce_dtype=f32 \
        "output_dir=$wide" > "$wide.log" 2>&1 || { cat "$wide.log"; fail "$variant: dist.reduce_dtype=f32"; }
      ! diff -q <(numbers "$many") <(numbers "$wide") > /dev/null || fail "$variant: dist.reduce_dtype=f32 changed nothing"
      paste -d' ' <(numbers "$many" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2) \
        <(numbers "$wide" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2) |
        awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-2 * $1) bad = 1 }
             END { exit bad || NR != 3 }' || fail "$variant: dist.reduce_dtype=f32 losses stray from bf16's"
    fi
  fi
  echo "$variant: $n ranks = one process, $(echo "$files" | wc -l) files identical; $(numbers "$many" | tail -2 | head -1)"
done
echo "fsdp recipes at $n ranks: ok"
