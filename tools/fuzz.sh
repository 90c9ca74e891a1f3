#!/usr/bin/env bash
# Builds the libFuzzer targets under tests/fuzz with clang (ASan + UBSan) and runs each for a bounded time:
# every file reader qtune has, each linked with only the library sources it needs.
#   tools/fuzz.sh [SECONDS_PER_TARGET=30] [WORK_DIR=build/fuzz] [TARGET ...]
# A crash leaves its reproducer in WORK_DIR/<target>.crashes/ and makes the script exit non-zero; turn it
# into a regression test (tests/fuzz/regressions/<target>/ inputs are replayed first, every run).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
work=${2:-build/fuzz}
shift $(($# < 2 ? $# : 2))
clang=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$clang" ]; then
  echo "fuzz: clang++ not found (apt-get install clang-14)" >&2
  exit 1
fi
mkdir -p "$work/obj"

json="engine/io/json_reader.cpp engine/check.cpp"
declare -A sources=(
  [fuzz_safetensors]="engine/io/safetensors_header.cpp engine/io/utf8.cpp engine/check.cpp"
  [fuzz_gguf]="engine/io/gguf_header.cpp engine/io/gguf_value.cpp engine/io/ggml_type.cpp engine/io/utf8.cpp
    engine/check.cpp"
  [fuzz_token_shard]="data/token_shard_header.cpp engine/check.cpp"
  [fuzz_llama_config]="models/llama_config.cpp engine/host_memory.cpp $json"
  [fuzz_checkpoint_index]="engine/io/checkpoint_index.cpp $json"
  [fuzz_tokenizer_json]="data/tokenizer_bpe.cpp data/tokenizer_sentencepiece.cpp data/bpe_model.cpp
    data/bpe_regex.cpp data/bpe_byte_level.cpp data/tokenizer_utf8.cpp engine/io/atomic_file.cpp $json"
  [fuzz_adapter_config]="models/peft_config.cpp $json"
  [fuzz_quantization_config]="models/quantization_config.cpp quant/weight_scheme.cpp quant/qat_config.cpp
    engine/io/gguf_header.cpp engine/io/gguf_value.cpp engine/io/ggml_type.cpp engine/io/utf8.cpp
    quant/float8_recipe.cpp $json"
  [fuzz_instruction_jsonl]="data/instruction_data.cpp data/tokenizer_utf8.cpp engine/check.cpp"
  [fuzz_eval_jsonl]="data/eval_data.cpp data/tokenizer_utf8.cpp engine/check.cpp"
  [fuzz_run_config]="tools/recipes/run_config.cpp tools/recipes/recipe.cpp quant/qat_config.cpp quant/float8_recipe.cpp
    data/tokenizer_utf8.cpp models/llama_config.cpp engine/host_memory.cpp engine/device.cpp
    engine/backend_registry.cpp $json"
  [fuzz_trainer_state]="tools/recipes/trainer_state.cpp $json"
)
# System libraries a target's sources need.
declare -A libs=(
  [fuzz_tokenizer_json]="-lpcre2-8 -lsentencepiece -lsentencepiece_train"
)
# Largest input per target: whole files where seeds are bigger than the default.
declare -A max_len=([fuzz_tokenizer_json]=16384)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(printf '%s\n' "${!sources[@]}" | sort))
flags=(-std=c++20 -O1 -g -I. -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)

# Each library source is compiled once per run, whatever number of targets link it (never reused from an
# earlier run: a header may have changed since).
declare -A compiled=()
object_of() { echo "$work/obj/$(tr '/' '_' <<<"${1%.cpp}").o"; }
compile() {
  local src=$1
  [ -n "${compiled[$src]+x}" ] && return
  "$clang" "${flags[@]}" -c "$src" -o "$(object_of "$src")"
  compiled[$src]=1
}

status=0
for target in "${targets[@]}"; do
  [ -n "${sources[$target]+x}" ] || { echo "fuzz: unknown target $target" >&2; exit 2; }
  objects=()
  for src in ${sources[$target]}; do
    compile "$src"
    objects+=("$(object_of "$src")")
  done
  exe="$work/$target"
  # shellcheck disable=SC2086
  "$clang" "${flags[@]/fuzzer-no-link/fuzzer}" "tests/fuzz/$target.cpp" "${objects[@]}" ${libs[$target]:-} -o "$exe"
  name=${target#fuzz_}
  corpus="$work/$target.corpus"
  mkdir -p "$corpus" "$work/$target.crashes"
  cp -n tests/fuzz/seeds/"$name"/* "$corpus/" 2>/dev/null || true
  # Inputs that once crashed: each must now pass.
  if compgen -G "tests/fuzz/regressions/$name/*" >/dev/null; then
    if ! "$exe" tests/fuzz/regressions/"$name"/* >"$work/$target.regressions.log" 2>&1; then
      echo "fuzz: $target fails a regression input; see $work/$target.regressions.log" >&2
      tail -40 "$work/$target.regressions.log" >&2
      status=1
      continue
    fi
  fi
  echo "fuzz: $target for ${seconds}s"
  dict=()
  [ -f "tests/fuzz/seeds/$name.dict" ] && dict=(-dict="tests/fuzz/seeds/$name.dict")
  if ! "$exe" "$corpus" "${dict[@]}" -max_total_time="$seconds" -max_len="${max_len[$target]:-4096}" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$target.crashes/" 2>"$work/$target.log"; then
    echo "fuzz: $target FAILED; see $work/$target.log and the reproducer in $work/$target.crashes/" >&2
    tail -40 "$work/$target.log" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss' "$work/$target.log" | sed "s/^/fuzz: $target /"
  fi
done
rm -rf /tmp/qtune_fuzz_*
exit $status
