#!/usr/bin/env bash
# A short `qtune demo`: every stage runs (tokenizer, pretraining, fine-tuning, GGUF export, evaluation), the
# held-out table has numbers, and the artifacts are where the demo says.
# Reports SKIPPED (77) when the fortunes corpus is not installed (apt-get install fortunes).
set -euo pipefail
qtune=$1 out=$2
corpus=/usr/share/games/fortunes
if [ ! -d "$corpus" ]; then
  echo "SKIPPED: $corpus not found (apt-get install fortunes)"
  exit 77
fi
rm -rf "$out"
"$qtune" demo --pretrain-steps 12 --finetune-steps 6 --vocab-size 400 --out "$out"
for f in tokenizer.model corpus/train.txt corpus/heldout.txt pretrain/metrics.jsonl pretrain/final/model.safetensors \
         finetune_plain/final/model.safetensors finetune_qat/final/model.safetensors results.json results.md \
         finetune_plain-q4_0.gguf finetune_qat-q4_0.gguf; do
  [ -s "$out/$f" ] || { echo "missing $out/$f"; exit 1; }
done
[ "$(grep -c '"loss"' "$out/pretrain/metrics.jsonl")" -ge 1 ]
# Every row of the table is measured: float, PTQ and QAT.
numbers=$(grep -c '"word_perplexity": [0-9]' "$out/results.json")
[ "$numbers" -eq 4 ] || { echo "expected 4 measured rows in results.json"; cat "$out/results.json"; exit 1; }
grep -q '"qat_recovered_fraction": -\?[0-9]' "$out/results.json"
grep -q 'QAT recovered' "$out/results.md"
# The QAT model as GGUF q4_0: its projections in Q4_0, readable by qtune's strict reader.
"$qtune" info "$out/finetune_qat-q4_0.gguf" >"$out/info.txt"
grep -q "^blk.0.attn_q.weight  *Q4_0 " "$out/info.txt"
