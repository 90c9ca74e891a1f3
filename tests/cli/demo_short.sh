#!/usr/bin/env bash
# Runs a short `qtune demo`: it must train (its exit status says held-out loss fell) and write metrics.
# Reports SKIPPED (77) when the fortunes corpus is not installed (apt-get install fortunes).
set -euo pipefail
qtune=$1 out=$2
corpus=/usr/share/games/fortunes
if [ ! -d "$corpus" ]; then
  echo "SKIPPED: $corpus not found (apt-get install fortunes)"
  exit 77
fi
rm -rf "$out"
"$qtune" demo --steps 40 --out "$out"
lines=$(wc -l < "$out/metrics.jsonl")
[ "$lines" -eq 40 ] || { echo "expected 40 metric lines, got $lines"; exit 1; }
grep -q '"tokens_per_s"' "$out/metrics.jsonl"
