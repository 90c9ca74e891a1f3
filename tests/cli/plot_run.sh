#!/usr/bin/env bash
# `qtune plot` on a short run. Without gnuplot it must fail naming the problem and leave the script and
# data behind (checked with an empty PATH); with gnuplot it must draw curves.png. Reports SKIPPED (77)
# when gnuplot is not installed (apt-get install gnuplot-nox), after the checks that need none.
set -euo pipefail
qtune=$1 src=$2 out=$3
golden=$src/tests/golden
rm -rf "$out" "$out".*.log
fail() { echo "FAILED: $*"; exit 1; }
"$qtune" run full --config "$src/configs/tiny_shakespeare_full.json" \
  "data.train=$golden/tokenizers/train.txt" "data.eval=$golden/tokenizers/train.txt" \
  "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2 \
  schedule.warmup_steps=1 train.steps=3 train.eval_batches=1 "output_dir=$out" > "$out.run.log" 2>&1 ||
  { cat "$out.run.log"; fail "run"; }

if env PATH=/nonexistent "$qtune" plot "$out" > "$out.nognuplot.log" 2>&1; then fail "plot without gnuplot must fail"; fi
cat "$out.nognuplot.log"
grep -q "gnuplot not found on PATH" "$out.nognuplot.log" || fail "wrong message without gnuplot"
[ -s "$out/curves.gp" ] && [ -s "$out/curves_train.dat" ] && [ -s "$out/curves_eval.dat" ] || fail "script/data missing"

if ! command -v gnuplot > /dev/null; then
  echo "SKIPPED: gnuplot not installed (apt-get install gnuplot-nox)"
  exit 77
fi
"$qtune" plot "$out"
[ "$(head -c 8 "$out/curves.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "curves.png is not a PNG"
echo "plot: ok"
