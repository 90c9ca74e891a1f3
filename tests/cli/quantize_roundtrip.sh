#!/usr/bin/env bash
# `qtune quantize` on a tiny checkpoint, then `qtune eval` and `qtune generate` on the quantized directory:
# every scheme writes a loadable model; the saved model evaluates exactly as `eval --quantize` does in memory;
# --report prints its table and writes report.json; a non-empty --out is refused without --force.
set -euo pipefail
qtune=$1 model_dir=$2 data=$3 out=$4
rm -rf "$out"
mkdir -p "$out"
ppl() { sed -n 's/^token_perplexity  *\([0-9.]*\)$/\1/p' <<<"$1"; }
for scheme in 8da4w int4wo nf4 q4_0 q8_0; do
  group=()
  [ "$scheme" = int4wo ] && group=(--group-size 32)
  "$qtune" quantize --model "$model_dir" --scheme "$scheme" "${group[@]}" --out "$out/$scheme" >"$out/summary.txt"
  grep -q "quantized 14 modules with $scheme" "$out/summary.txt" || { cat "$out/summary.txt"; exit 1; }
  grep -q '"quant_method": "qtune"' "$out/$scheme/config.json" || { echo "no quantization_config"; exit 1; }
  [ -f "$out/$scheme/tokenizer.model" ] || { echo "tokenizer not copied"; exit 1; }
  saved=$(ppl "$("$qtune" eval --model "$out/$scheme" --data "$data")")
  memory=$(ppl "$("$qtune" eval --model "$model_dir" --data "$data" --quantize "$scheme" "${group[@]}")")
  echo "$scheme: saved $saved, in memory $memory"
  [ -n "$saved" ] && [ "$saved" = "$memory" ] || { echo "$scheme: the saved model evaluates differently"; exit 1; }
done
text=$("$qtune" generate --model "$out/8da4w" --prompt "Once upon a time" --max-new-tokens 8 --temperature 0)
grep -q "^Once upon a time" <<<"$text" || { echo "generate printed: $text"; exit 1; }
report=$("$qtune" quantize --model "$model_dir" --scheme q4_0 --report --out "$out/report")
echo "$report"
grep -Eq "^model.layers.1.mlp.down_proj +Linear +[0-9.]+ +[0-9.]+$" <<<"$report" || { echo "no report row"; exit 1; }
grep -q '"output_sqnr_db"' "$out/report/report.json" || { echo "no report.json"; exit 1; }
if "$qtune" quantize --model "$model_dir" --scheme q8_0 --out "$out/report" 2>"$out/err.txt"; then
  echo "a non-empty --out was overwritten"; exit 1
fi
grep -q "is not empty: choose another directory or pass --force" "$out/err.txt" || { cat "$out/err.txt"; exit 1; }
"$qtune" quantize --model "$model_dir" --scheme q8_0 --out "$out/report" --force >/dev/null
grep -q '"scheme": "q8_0"' "$out/report/config.json" || { echo "--force did not rewrite"; exit 1; }
