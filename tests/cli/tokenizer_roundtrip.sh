#!/usr/bin/env bash
# `qtune tokenizer train` writes a model that `encode` and `decode` then use: the text must come back.
set -euo pipefail
qtune=$1 text=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
"$qtune" tokenizer train --input "$text" --vocab-size 800 --out "$out/tok.model"
[ -s "$out/tok.model" ] || { echo "no model written"; exit 1; }
sample='Hello, tokenizer! Grüße 🦜 123'
ids=$("$qtune" tokenizer encode --tokenizer "$out/tok.model" --text "$sample" --bos --eos)
echo "ids: $ids"
[ "${ids%% *}" = 1 ] && [ "${ids##* }" = 2 ] || { echo "expected bos 1 first and eos 2 last"; exit 1; }
back=$("$qtune" tokenizer decode --tokenizer "$out/tok.model" --ids "$ids")
[ "$back" = "$sample" ] || { echo "decoded '$back', expected '$sample'"; exit 1; }
# A directory holding tokenizer.model works too.
mv "$out/tok.model" "$out/tokenizer.model"
[ "$("$qtune" tokenizer encode --tokenizer "$out" --text "$sample" --bos --eos)" = "$ids" ]
