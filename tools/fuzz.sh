#!/usr/bin/env bash
# Builds the libFuzzer targets under tests/fuzz with clang (ASan + UBSan) and runs each for a bounded time.
#   tools/fuzz.sh [SECONDS_PER_TARGET=60] [WORK_DIR=build/fuzz]
# A crash leaves its reproducer in WORK_DIR/<target>.crashes/ and makes the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
work=${2:-build/fuzz}
clang=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$clang" ]; then
  echo "fuzz: clang++ not found (apt-get install clang-14)" >&2
  exit 1
fi
mkdir -p "$work"

# Each target lists the library sources it needs; they must not drag in the rest of the engine.
declare -A sources=(
  [fuzz_safetensors]="engine/io/safetensors_header.cpp engine/check.cpp"
  [fuzz_token_shard]="data/token_shard_header.cpp engine/check.cpp"
)

status=0
for target in "${!sources[@]}"; do
  exe="$work/$target"
  # shellcheck disable=SC2086
  "$clang" -std=c++20 -O1 -g -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "tests/fuzz/$target.cpp" ${sources[$target]} -o "$exe"
  corpus="$work/$target.corpus"
  mkdir -p "$corpus" "$work/$target.crashes"
  cp -n tests/fuzz/seeds/"${target#fuzz_}"/* "$corpus/" 2>/dev/null || true
  echo "fuzz: $target for ${seconds}s"
  dict=()
  [ -f "tests/fuzz/seeds/${target#fuzz_}.dict" ] && dict=(-dict="tests/fuzz/seeds/${target#fuzz_}.dict")
  if ! "$exe" "$corpus" "${dict[@]}" -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$work/$target.crashes/" 2>"$work/$target.log"; then
    echo "fuzz: $target FAILED; see $work/$target.log and the reproducer in $work/$target.crashes/" >&2
    tail -40 "$work/$target.log" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss' "$work/$target.log" | sed "s/^/fuzz: $target /"
  fi
done
exit $status
