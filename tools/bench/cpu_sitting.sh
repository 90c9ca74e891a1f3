#!/usr/bin/env bash
# One sitting of qtune against PyTorch on this CPU, the comparison issue 19's targets are about: `qtune bench
# train` in f32, bf16 (also with f32 master weights, autocast's arrangement), bf16 + LoRA and bf16 + QLoRA, then
# the PyTorch peers (torch.compile f32 and bf16 autocast; eager LoRA and QLoRA in bf16), on the same THREADS
# cores, one after another, nothing else running.
# Prints one table of medians with the ratios the targets name. Needs python3 with torch and transformers
# (the QLoRA peer also torchao).
#
# With ROUNDS > 1 the whole sequence runs ROUNDS times, so that qtune's and PyTorch's runs alternate; the table
# then holds each run's median over the rounds, with the range beside it (a shared machine's load moves both).
#
#   tools/bench/cpu_sitting.sh QTUNE THREADS [STEPS [ROUNDS]]   e.g. tools/bench/cpu_sitting.sh build/default/tools/qtune 2 5 3
set -uo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 QTUNE THREADS [STEPS [ROUNDS]]" >&2
  exit 2
fi
qtune=$1 threads=$2 steps=${3:-5} rounds=${4:-1}
if ! [[ $threads =~ ^[1-9][0-9]*$ && $steps =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: THREADS, STEPS and ROUNDS must be positive integers, got '$threads', '$steps' and '$rounds'" >&2
  exit 2
fi
if [[ ! -x $qtune ]]; then
  echo "$0: no qtune executable at '$qtune'" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
log=$(mktemp -d)
export OMP_NUM_THREADS=$threads
# THREADS CPUs on distinct physical cores, the same for every run (a machine with more cores than the
# comparison wants; two hyperthreads of one core would halve what each gets).
pin=()
if command -v taskset > /dev/null && command -v lscpu > /dev/null; then
  cpus=$(lscpu -p=cpu,core | grep -v '^#' | sort -t, -k2,2n -u | head -n "$threads" | cut -d, -f1 | paste -sd,)
  pin=(taskset -c "$cpus")
  echo "pinned to CPUs $cpus"
fi

grep -m1 'model name' /proc/cpuinfo
grep -m1 -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '
echo "threads $threads, $steps timed steps per run, $rounds round(s); logs in $log"

median_of() { grep -E '^\| median \|' "$1" | head -n 1 | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }
declare -A runs  # name -> the tokens/s of each round, space-separated
record() {  # name, tokens/s (empty when the run failed)
  [[ -n $2 ]] && runs[$1]="${runs[$1]:-} $2"
  echo "round $round: $1 ${2:-failed} tokens/s"
}
run_qtune() {  # name, bench train arguments...
  local name=$1
  shift
  "${pin[@]}" "$qtune" bench train --steps "$steps" --warmup 2 "$@" > "$log/$name.$round.log" 2>&1
  record "$name" "$(median_of "$log/$name.$round.log")"
}
run_torch() {  # script, modes
  local out="$log/$1.$round.log" mode
  "${pin[@]}" "$python" "$here/$1" --threads "$threads" --steps "$steps" --warmup 2 --modes "$2" > "$out" 2>&1
  for mode in ${2//,/ }; do
    record "torch:$mode" "$(grep -E "^\| $mode \|" "$out" | awk -F'|' '{gsub(/ /, "", $4); print $4}')"
  done
}

for ((round = 1; round <= rounds; ++round)); do
  run_qtune f32 --dtype f32
  run_qtune bf16 --dtype bf16
  run_qtune masters --dtype bf16 --f32-masters
  run_qtune lora --dtype bf16 --adapters lora
  run_qtune qlora --dtype bf16 --adapters qlora
  [[ $round == 1 ]] && grep -m1 -E '^bf16 GEMMs' "$log/bf16.1.log"
  run_torch torch_train_peer.py compile-f32,compile-autocast
  run_torch torch_lora_peer.py lora-bf16,qlora-bf16
done

# The median of a name's rounds (the lower middle one for an even count), and "lo-hi" over them.
declare -A rate spread
for name in "${!runs[@]}"; do
  sorted=$(tr ' ' '\n' <<< "${runs[$name]}" | grep . | sort -g)
  count=$(wc -l <<< "$sorted")
  rate[$name]=$(sed -n "$(((count + 1) / 2))p" <<< "$sorted")
  spread[$name]=$(sed -n 1p <<< "$sorted")-$(sed -n "${count}p" <<< "$sorted")
done
ratio() { [[ -n ${rate[$1]:-} && -n ${rate[$2]:-} ]] && awk -v a="${rate[$1]}" -v b="${rate[$2]}" 'BEGIN { printf "%.2fx", a / b }' || echo "-"; }
shown() { [[ $rounds -gt 1 && -n ${rate[$1]:-} ]] && echo "${rate[$1]} (${spread[$1]})" || echo "${rate[$1]:-}"; }
echo
echo "| qtune | tokens/s | PyTorch | tokens/s | ratio | target |"
echo "|---|---|---|---|---|---|"
echo "| f32 | $(shown f32) | compile f32 | $(shown torch:compile-f32) | $(ratio f32 torch:compile-f32) | >= 1x |"
echo "| bf16 | $(shown bf16) | compile bf16 autocast | $(shown torch:compile-autocast) | $(ratio bf16 torch:compile-autocast) | >= 1.5x |"
echo "| bf16, f32 masters | $(shown masters) | compile bf16 autocast | $(shown torch:compile-autocast) | $(ratio masters torch:compile-autocast) | |"
echo "| LoRA bf16 | $(shown lora) | eager LoRA bf16 | $(shown torch:lora-bf16) | $(ratio lora torch:lora-bf16) | |"
echo "| QLoRA bf16 | $(shown qlora) | eager QLoRA (torchao NF4) | $(shown torch:qlora-bf16) | $(ratio qlora torch:qlora-bf16) | >= 1.5x |"
