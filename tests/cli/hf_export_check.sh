#!/usr/bin/env bash
# tools/check_hf_export.py on `qtune export` of the golden PEFT adapter (DTYPE, default f32): transformers loads
# the export and reproduces qtune's logits, and peft's merge_and_unload holds the same weights.
# SKIPPED (77) without transformers and peft.
set -euo pipefail
qtune=$1 src=$2 out=$3 dtype=${4:-f32}
python3 -c "import transformers, peft" 2>/dev/null || { echo "transformers or peft not installed: SKIPPED"; exit 77; }
rm -rf "$out"
mkdir -p "$out"
source "$src/tests/cli/lora_base.sh"
make_lora_base "$src" "$out/base"
prompt="The cat sat on the mat. Then it ran!"
"$qtune" export --model "$out/base" --adapter "$adapter" --dtype "$dtype" --out "$out/merged"
"$qtune" eval --model "$out/merged" --dump-logits "$out/logits.json" --prompt "$prompt"
python3 "$src/tools/check_hf_export.py" "$out/merged" "$out/logits.json" --peft "$out/base" "$adapter"
