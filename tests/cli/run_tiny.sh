#!/usr/bin/env bash
# `qtune run full` on the shipped tiny_shakespeare config, shrunk by overrides to the test corpus and a
# few steps: it trains, writes metrics, checkpoints and a final model that `qtune generate` loads; a
# resumed run continues from the newest checkpoint; a fresh run into the same directory is refused.
set -euo pipefail
qtune=$1 src=$2 out=$3
golden=$src/tests/golden
rm -rf "$out" "$out".*.log
run=("$qtune" run full --config "$src/configs/tiny_shakespeare_full.json"
  "data.train=$golden/tokenizers/train.txt" "data.eval=$golden/tokenizers/train.txt"
  "model.tokenizer=$golden/tiny_llama_sp/tokenizer.model" data.seq_len=32 data.batch_size=2
  schedule.warmup_steps=1 train.eval_every=2 train.eval_batches=2 train.save_every=2 train.log_every=1
  "output_dir=$out")
fail() { echo "FAILED: $*"; exit 1; }

"${run[@]}" train.steps=4 > "$out.first.log" 2>&1 || { cat "$out.first.log"; fail "first run"; }
cat "$out.first.log"
grep -q "done: steps 1..4 of 4" "$out.first.log" || fail "no summary"
[ "$(grep -c '"loss"' "$out/metrics.jsonl")" -eq 4 ] || fail "expected 4 step lines"
[ "$(grep -c '"eval_loss"' "$out/metrics.jsonl")" -eq 2 ] || fail "expected 2 eval lines"
[ -f "$out/checkpoints/step_4/trainer_state.json" ] || fail "no checkpoint at step 4"

"${run[@]}" train.steps=6 train.resume=true > "$out.resume.log" 2>&1 || { cat "$out.resume.log"; fail "resume"; }
cat "$out.resume.log"
grep -q "resumed from .*step_4 at step 4 of 6" "$out.resume.log" || fail "did not resume from step_4"
grep -q "done: steps 5..6 of 6" "$out.resume.log" || fail "no summary after resume"
[ "$(grep -c '"loss"' "$out/metrics.jsonl")" -eq 6 ] || fail "expected 6 step lines after resume"

"$qtune" generate --model "$out/final" --prompt "The" --max-new-tokens 4 --temperature 0 || fail "generate on final/"

if "${run[@]}" train.steps=4 > "$out.again.log" 2>&1; then fail "a fresh run into a used output_dir must fail"; fi
grep -q "already holds a run" "$out.again.log" || { cat "$out.again.log"; fail "wrong message"; }
echo "run, resume and generate: ok"
