#!/usr/bin/env bash
# `qtune export` of the golden PEFT adapter, and `eval` / `generate --adapter` on the un-merged model:
# the merged export evaluates like base + adapter and unlike the base; --base-nf4 merges into the base
# quantized as QLoRA trains it (equal to an nf4 checkpoint + adapter); a failed export leaves no --out.
set -euo pipefail
qtune=$1 src=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
source "$src/tests/cli/lora_base.sh"
make_lora_base "$src" "$out/base"
cat >"$out/docs.jsonl" <<'DOCS'
{"text": "The cat sat on the mat. Then it ran in the garden, where the other cats were."}
{"text": "A letter came: Anna wrote that the winter there is long, but the river is quiet."}
DOCS
ppl() { sed -n 's/^token_perplexity  *\([0-9.]*\)$/\1/p' <<<"$1"; }
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-4 * b) }'; }

"$qtune" export --model "$out/base" --adapter "$adapter" --format hf --out "$out/merged" | tee "$out/export.txt"
grep -q "^merged 15 modules (.*; rank 4, alpha 8)" "$out/export.txt" || { echo "no merge summary"; exit 1; }
grep -q '"torch_dtype": "float32"' "$out/merged/config.json" || { echo "the base's dtype was not kept"; exit 1; }
[ -f "$out/merged/tokenizer.json" ] || { echo "tokenizer not copied"; exit 1; }
[ -z "$(ls -d "$out"/merged.* 2>/dev/null)" ] || { echo "staging directory left behind"; exit 1; }

merged=$(ppl "$("$qtune" eval --model "$out/merged" --data "$out/docs.jsonl")")
unmerged=$(ppl "$("$qtune" eval --model "$out/base" --adapter "$adapter" --data "$out/docs.jsonl")")
base=$(ppl "$("$qtune" eval --model "$out/base" --data "$out/docs.jsonl")")
echo "token perplexity: merged $merged, base + adapter $unmerged, base $base"
close "$merged" "$unmerged" || { echo "the merged export evaluates differently from base + adapter"; exit 1; }
! close "$merged" "$base" || { echo "the adapter changed nothing"; exit 1; }

gen() { "$qtune" generate --prompt "The cat" --max-new-tokens 12 --temperature 0 "$@" 2>/dev/null; }
text=$(gen --model "$out/base" --adapter "$adapter")
echo "generate --adapter: $text"
[ "$text" = "$(gen --model "$out/merged")" ] || { echo "generate on the export differs"; exit 1; }
[ "$text" != "$(gen --model "$out/base")" ] || { echo "generate --adapter equals the base's text"; exit 1; }

"$qtune" export --model "$out/base" --adapter "$adapter" --out "$out/merged_bf16" --dtype bf16 >/dev/null
grep -q '"torch_dtype": "bfloat16"' "$out/merged_bf16/config.json" || { echo "--dtype bf16 not written"; exit 1; }

# QLoRA: export --base-nf4 == an nf4 checkpoint (head included: the adapter targets it) + adapter.
"$qtune" quantize --model "$out/base" --scheme nf4 --include-head --out "$out/nf4" >/dev/null 2>&1
"$qtune" export --model "$out/base" --adapter "$adapter" --base-nf4 --out "$out/qlora" >/dev/null
"$qtune" export --model "$out/nf4" --adapter "$adapter" --out "$out/qlora_from_nf4" >/dev/null
qlora=$(ppl "$("$qtune" eval --model "$out/qlora" --data "$out/docs.jsonl")")
from_nf4=$(ppl "$("$qtune" eval --model "$out/qlora_from_nf4" --data "$out/docs.jsonl")")
nf4_adapter=$(ppl "$("$qtune" eval --model "$out/nf4" --adapter "$adapter" --data "$out/docs.jsonl")")
echo "token perplexity: --base-nf4 $qlora, nf4 checkpoint export $from_nf4, nf4 + adapter $nf4_adapter"
close "$qlora" "$nf4_adapter" && close "$from_nf4" "$nf4_adapter" || { echo "QLoRA export differs"; exit 1; }
! close "$qlora" "$merged" || { echo "--base-nf4 changed nothing"; exit 1; }

# A failing export (the adapter does not fit this base) leaves nothing under --out; --force replaces (a
# re-save without --adapter, here into f16).
"$qtune" export --model "$src/tests/golden/tiny_llama_sp" --adapter "$adapter" --out "$out/bad" 2>/dev/null && { echo "a misfit adapter was exported"; exit 1; }
[ ! -e "$out/bad" ] && [ -z "$(ls -d "$out"/bad.* 2>/dev/null)" ] || { echo "a failed export left files"; exit 1; }
"$qtune" export --model "$out/base" --out "$out/merged/" --dtype f16 --force >/dev/null
grep -q '"torch_dtype": "float16"' "$out/merged/config.json" || { echo "--force did not replace"; exit 1; }
[ "$(ls -A "$out/merged" | tr '\n' ' ')" = "config.json generation_config.json model.safetensors tokenizer.json " ] &&
  [ -z "$(ls -d "$out"/merged.* 2>/dev/null)" ] || { echo "--force left other files: $(ls -A "$out" "$out/merged")"; exit 1; }
echo "export, eval and generate --adapter: all checks passed"
