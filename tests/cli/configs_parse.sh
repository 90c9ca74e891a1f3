#!/usr/bin/env bash
# Every config in configs/ parses, with its own recipe (`qtune run RECIPE --config FILE --print-config`).
set -euo pipefail
qtune=$1 dir=$2
n=0
for config in "$dir"/*.json; do
  recipe=$(sed -n 's/^ *"recipe": *"\([a-z_]*\)".*/\1/p' "$config" | head -1)
  [[ -n "$recipe" ]] || { echo "$config: no recipe key"; exit 1; }
  "$qtune" run "$recipe" --config "$config" --print-config >/dev/null || { echo "$config does not parse"; exit 1; }
  n=$((n + 1))
done
echo "$n configs parse"
[[ $n -ge 6 ]]
