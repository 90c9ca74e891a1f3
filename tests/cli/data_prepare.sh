#!/usr/bin/env bash
# `qtune data prepare`: documents at separator lines, a shard of 32 + 2 * tokens bytes, the same tokens
# through a .model file and a model directory, and failures (bad UTF-8, bad tokenizer) that leave no file.
set -euo pipefail
qtune=$1 model_dir=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
printf 'The first document.\n%%\nThe second one,\non two lines.\n%%\n\n%%\nThird.\n' > "$out/a.txt"
printf 'A second file is one more document.\n' > "$out/b.txt"
summary=$("$qtune" data prepare --tokenizer "$model_dir/tokenizer.model" --input "$out/a.txt" --input "$out/b.txt" \
          --separator % --out "$out/a.bin")
echo "$summary"
grep -q "documents    4$" <<<"$summary" || { echo "expected 4 documents"; exit 1; }
tokens=$(sed -n 's/^  tokens  *\([0-9]*\)$/\1/p' <<<"$summary")
size=$(stat -c %s "$out/a.bin")
[ "$size" -eq $((32 + 2 * tokens)) ] || { echo "file of $size bytes for $tokens u16 tokens"; exit 1; }
[ "$(head -c 8 "$out/a.bin")" = QTTOKENS ] || { echo "no shard magic"; exit 1; }
# A model directory picks the same tokenizer.model.
"$qtune" data prepare --tokenizer "$model_dir" --input "$out/a.txt" --input "$out/b.txt" --separator % --out "$out/d.bin"
cmp "$out/a.bin" "$out/d.bin"
# Failures name the culprit and leave no output (nor temporary file) behind.
printf 'fine\nbad \xC3\x28\n' > "$out/bad.txt"
if "$qtune" data prepare --tokenizer "$model_dir" --input "$out/bad.txt" --out "$out/bad.bin" 2>"$out/err.txt"; then
  echo "invalid UTF-8 accepted"; exit 1
fi
grep -q "bad.txt:2: invalid UTF-8" "$out/err.txt" || { cat "$out/err.txt"; exit 1; }
if "$qtune" data prepare --tokenizer "$out/a.txt" --input "$out/b.txt" --out "$out/bad.bin" 2>"$out/err.txt"; then
  echo "a text file accepted as tokenizer"; exit 1
fi
grep -q "$out/a.txt" "$out/err.txt" || { cat "$out/err.txt"; exit 1; }
leftovers=$(find "$out" -name 'bad.bin*')
[ -z "$leftovers" ] || { echo "left behind: $leftovers"; exit 1; }
