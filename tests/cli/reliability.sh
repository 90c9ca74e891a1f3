#!/usr/bin/env bash
# What a killed or doubled command must not lose (each case failed before the fix that it tests):
#  - two `qtune run` on one output_dir: exactly one runs, nothing of it is lost; a resume beside a live run is
#    refused with the owner's pid;
#  - a run killed before its first checkpoint resumes from step 0; a run killed while writing final/ leaves a
#    .final.tmp-PID that the next command removes; resuming a finished run says so;
#  - `qtune quantize --force` killed at each step of its write leaves the old output intact or the new one
#    complete; `export --force` killed between its renames is completed by the next command; an old copy
#    left aside alone is restored;
#  - a config.json too large for this machine is refused, naming the file and the keys (info exits non-zero);
#  - lengths past the model's context are errors.
set -uo pipefail
qtune=$1 src=$2 out=$3
golden=$src/tests/golden
model=$golden/tiny_llama_sp
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAILED: $*"; exit 1; }
expect_fail() {  # expect_fail LOG PATTERN -- command...
  local log=$1 pattern=$2
  shift 3
  if "$@" >"$log" 2>&1; then cat "$log"; fail "expected failure: $*"; fi
  grep -Eq -- "$pattern" "$log" || { cat "$log"; fail "expected /$pattern/ from: $*"; }
}

run=("$qtune" run full --config "$src/configs/tiny_shakespeare_full.json"
  "data.train=$golden/tokenizers/train.txt" data.eval= "model.tokenizer=$model/tokenizer.model"
  model.config.hidden_size=64 model.config.intermediate_size=128 model.config.num_hidden_layers=2
  model.config.num_attention_heads=4 model.config.num_key_value_heads=2 data.seq_len=32 data.batch_size=2
  schedule.warmup_steps=1 train.log_every=1 train.eval_every=0 train.keep_checkpoints=2)
step_lines() { grep -c '"loss"' "$1/metrics.jsonl"; }

echo "== two runs on one output_dir"
d=$out/twins
"${run[@]}" output_dir=$d train.steps=150 train.save_every=25 >"$out/twin1.log" 2>&1 &
p1=$!
"${run[@]}" output_dir=$d train.steps=150 train.save_every=25 >"$out/twin2.log" 2>&1 &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
[ $((r1 == 0)) -ne $((r2 == 0)) ] || { cat "$out"/twin*.log; fail "exactly one of two runs must succeed ($r1, $r2)"; }
loser=$out/twin2.log
[ $r1 -ne 0 ] && loser=$out/twin1.log
# Started together, the second normally meets the lock; on a very slow start it meets the finished run instead.
grep -Eq "output_dir .*twins is in use by another qtune process \(pid [0-9]+\)|already holds a run" "$loser" ||
  { cat "$loser"; fail "loser's message"; }
[ "$(step_lines "$d")" -eq 150 ] || fail "metrics.jsonl lost lines: $(step_lines "$d") of 150"
[ "$(ls "$d/checkpoints" | grep -c '^step_')" -eq 2 ] || { ls -a "$d/checkpoints"; fail "keep_checkpoints=2 not kept"; }
[ ! -e "$d/.qtune.lock" ] || fail "the lock file outlived its run"

echo "== resume beside a live run"
d=$out/live
"${run[@]}" output_dir=$d train.steps=1500 train.save_every=500 >"$out/live.log" 2>&1 &
p=$!
for _ in $(seq 600); do [ -s "$d/metrics.jsonl" ] && break; sleep 0.05; done
[ -s "$d/metrics.jsonl" ] || fail "the run never logged a step"
kill -STOP $p  # alive for certain while the resume tries
expect_fail "$out/live_resume.log" "is in use by another qtune process \(pid $p\)" -- "${run[@]}" output_dir=$d train.steps=1500 train.resume=true
kill -CONT $p
wait $p || { cat "$out/live.log"; fail "the live run was disturbed"; }
[ "$(step_lines "$d")" -eq 1500 ] || fail "the live run lost metrics lines"

echo "== killed before its first checkpoint"
d=$out/early
"${run[@]}" output_dir=$d train.steps=1000000 train.save_every=2000000 >"$out/early.log" 2>&1 &
p=$!
for _ in $(seq 600); do [ -s "$d/metrics.jsonl" ] && break; sleep 0.05; done
kill -9 $p; wait $p 2>/dev/null
"${run[@]}" output_dir=$d train.steps=6 train.resume=true >"$out/early_resume.log" 2>&1 || { cat "$out/early_resume.log"; fail "resume after an early kill"; }
grep -q "no complete checkpoint .* starting from step 0" "$out/early_resume.log" || { cat "$out/early_resume.log"; fail "no step-0 note"; }
grep -q "done: steps 1..6 of 6" "$out/early_resume.log" || fail "early resume summary"
[ "$(step_lines "$d")" -eq 6 ] || fail "metrics after the early resume"

echo "== killed while writing final/, then resumed when finished"
d=$out/final
QTUNE_CRASH_AT=staged:filled:final "${run[@]}" output_dir=$d train.steps=4 >"$out/final.log" 2>&1 && fail "crash point not reached"
ls -a "$d" | grep -q '^\.final\.tmp-[0-9]*$' || { ls -a "$d"; fail "no .final.tmp-PID left by the kill"; }
"${run[@]}" output_dir=$d train.steps=4 train.resume=true >"$out/final_resume.log" 2>&1 || { cat "$out/final_resume.log"; fail "resume a finished run"; }
grep -q "removed .*\.final\.tmp-" "$out/final_resume.log" || { cat "$out/final_resume.log"; fail "leftover not reported"; }
grep -q "the run had already finished its 4 steps" "$out/final_resume.log" || fail "finished-run summary"
! ls -a "$d" | grep -q 'tmp-' || fail "leftovers remain"
[ -f "$d/final/config.json" ] || fail "final/ not written"

echo "== quantize --force killed at each step"
q=$out/q
"$qtune" quantize --model "$model" --scheme 8da4w --out "$q" >/dev/null || fail "first quantize"
old_sum=$(cat "$q"/* | sha256sum)
for point in quantize:weights_written staged:filled:q staged:moved_aside:q staged:swapped:q; do
  QTUNE_CRASH_AT=$point "$qtune" quantize --model "$model" --scheme nf4 --force --out "$q" >/dev/null 2>&1 &&
    fail "$point: crash point not reached"
  "$qtune" info "$q" >"$out/q_info.log" 2>&1 || { cat "$out/q_info.log"; fail "$point: info after the kill"; }
  if grep -q '"scheme": "8da4w"' "$q/config.json"; then
    [ "$(cat "$q"/* | sha256sum)" = "$old_sum" ] || fail "$point: the old output was changed"
    state=old
  else
    grep -q '"scheme": "nf4"' "$q/config.json" || fail "$point: neither old nor new"
    [ -f "$q/tokenizer.model" ] || fail "$point: the new output is incomplete"
    state=new
    # Back to the old model for the next kill point.
    "$qtune" quantize --model "$model" --scheme 8da4w --force --out "$q" >/dev/null 2>&1 || fail "re-quantize"
    [ "$(cat "$q"/* | sha256sum)" = "$old_sum" ] || fail "quantize is not deterministic"
  fi
  ! ls -a "$out" | grep -q '^\.q\.' || { ls -a "$out"; fail "$point: leftovers beside --out"; }
  echo "$point: $state output, intact"
done
[ "$state" = new ] || fail "the kill after the swap must leave the new output"

echo "== export --force killed between its renames; an old copy left aside"
e=$out/e
"$qtune" export --model "$model" --out "$e" >/dev/null || fail "first export"
QTUNE_CRASH_AT=staged:moved_aside:e "$qtune" export --model "$model" --dtype f32 --force --out "$e" >/dev/null 2>&1 &&
  fail "export crash point not reached"
[ ! -e "$e" ] || fail "the kill should have left no $e"
"$qtune" info "$e" >"$out/e_info.log" 2>&1 || { cat "$out/e_info.log"; fail "info after the export kill"; }
grep -q "completed the replacement of .*/e" "$out/e_info.log" || fail "swap not completed"
grep -q '"torch_dtype": "float32"' "$e/config.json" || fail "the completed export is not the new one"
mv "$e" "$out/.e.old-4194999"  # the old copy alone, of a dead process (pid above Linux's pid_max)
"$qtune" info "$e" >"$out/e_info2.log" 2>&1 || { cat "$out/e_info2.log"; fail "info on an aside copy"; }
grep -q "restored .*/e from .e.old-4194999" "$out/e_info2.log" || { cat "$out/e_info2.log"; fail "aside copy"; }

echo "== configs that cannot fit, lengths past the context"
big=$out/big
mkdir -p "$big"
cp "$model"/* "$big"/
sed -i 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 1099511627776/' "$big/config.json"
expect_fail "$out/big_info.log" "big/config.json: .*num_hidden_layers 1099511627776" -- "$qtune" info "$big"
expect_fail "$out/big_gen.log" "big/config.json: .*num_hidden_layers 1099511627776" -- "$qtune" generate --model "$big" --prompt hi
expect_fail "$out/long_gen.log" "would run past the model's context .*ask for at most" -- "$qtune" generate --model "$model" --prompt "The" --max-new-tokens 100000
long_prompt=$(printf 'The cat sat on the mat. %.0s' $(seq 80))
expect_fail "$out/long_prompt.log" "the prompt has [0-9]+ tokens, more than the model's context" -- "$qtune" generate --model "$model" --prompt "$long_prompt"
"$qtune" generate --model "$model" --prompt "${long_prompt:0:480}" --temperature 0 >"$out/clamped.log" 2>&1 ||
  { cat "$out/clamped.log"; fail "without --max-new-tokens, generation stops at the end of the context"; }
expect_fail "$out/same_out.log" "is the --model directory" -- "$qtune" quantize --model "$model" --scheme nf4 --force --out "$model/"
expect_fail "$out/long_eval.log" "windows of 5000 tokens are longer than the model's context" -- "$qtune" eval --model "$model" --data "$golden/eval/docs.jsonl" --seq-len 5000
expect_fail "$out/long_run.log" "data.seq_len 300 exceeds the model's context \(model.config max_position_embeddings = 256\)" -- "${run[@]}" output_dir=$out/long train.steps=2 data.seq_len=300
[ ! -e "$out/long" ] || fail "a refused run left its output_dir behind"
expect_fail "$out/bad_int.log" "--max-new-tokens: .*must be an integer from 0 to 2147483647, got 99999999999999999999" -- "$qtune" generate --model "$model" --prompt hi --max-new-tokens 99999999999999999999
expect_fail "$out/neg.log" "must be a number >= 0, got -1" -- "$qtune" generate --model "$model" --prompt hi --temperature -1
echo "reliability: ok"
