#!/usr/bin/env bash
# tools/check_gguf.py (llama.cpp's `gguf` package) on `qtune export --format gguf` of the tiny models: every type
# of the SentencePiece model, and a byte-level BPE model with Llama 3 RoPE scaling and a head_dim of its own.
# SKIPPED (77) without the gguf package.
set -euo pipefail
qtune=$1 src=$2 out=$3
python3 -c "import gguf" 2>/dev/null || { echo "the gguf package is not installed (pip install gguf): SKIPPED"; exit 77; }
rm -rf "$out"
mkdir -p "$out/bpe"
sp=$src/tests/golden/tiny_llama_sp
for type in f32 f16 bf16 q8_0 q4_0 q4_k_m; do
  "$qtune" export --model "$sp" --format gguf --type "$type" --out "$out/sp-$type.gguf" >/dev/null
  python3 "$src/tools/check_gguf.py" "$out/sp-$type.gguf" "$sp"
done
cp "$src/tests/golden/llama/untied_gqa_headdim/config.json" "$src/tests/golden/llama/untied_gqa_headdim/model.safetensors" \
  "$out/bpe/"
cp "$src/tests/cli/tiny_tokenizer.json" "$out/bpe/tokenizer.json"
for type in f32 q8_0; do
  "$qtune" export --model "$out/bpe" --format gguf --type "$type" --out "$out/bpe-$type.gguf" >/dev/null
  python3 "$src/tools/check_gguf.py" "$out/bpe-$type.gguf" "$out/bpe"
done
