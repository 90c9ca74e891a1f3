#!/usr/bin/env bash
# `qtune export --format gguf` and `qtune info FILE.gguf` on the tiny models: every type is written and read back
# by qtune's strict reader, a q4_0-quantized checkpoint exports to the very file its source's q4_0 export is,
# the errors name what is wrong, a damaged file is refused, and a failed export leaves no file.
set -euo pipefail
qtune=$1 src=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
sp=$src/tests/golden/tiny_llama_sp
fail() { echo "FAIL: $*"; exit 1; }
expect_error() {  # expect_error PATTERN COMMAND...: the command fails and its stderr holds PATTERN
  local pattern=$1
  shift
  if "$@" >"$out/err.txt" 2>&1; then fail "succeeded: $*"; fi
  grep -q -- "$pattern" "$out/err.txt" || { cat "$out/err.txt"; fail "no '$pattern' from: $*"; }
}

for type in f32 f16 bf16 q8_0 q4_0 q4_k_m; do
  "$qtune" export --model "$sp" --format gguf --type "$type" --out "$out/sp-$type.gguf" | tee "$out/export.txt"
  grep -q "^wrote $out/sp-$type.gguf (gguf $type, " "$out/export.txt" || fail "no summary line for $type"
  "$qtune" info "$out/sp-$type.gguf" >"$out/info-$type.txt"
  grep -q "^GGUF file: .* (version 3, 25 metadata keys, 20 tensors, alignment 32)" "$out/info-$type.txt" ||
    fail "info header for $type"
done
grep -q "^blk.1.ffn_down.weight  *Q4_0  *\[64, 128\]  *4608$" "$out/info-q4_0.txt" || fail "q4_0 projection row"
grep -q "^token_embd.weight  *Q8_0 " "$out/info-q4_0.txt" || fail "q4_0 file keeps the embedding in Q8_0"
# q4_k_m on rows of 64 and 128 weights: llama-quantize's fallbacks (Q4_K to Q5_0, the Q6_K of the tied head and of
# the last layer's ffn_down to Q8_0).
grep -q "^blk.0.ffn_down.weight  *Q5_0  *\[64, 128\]  *5632$" "$out/info-q4_k_m.txt" || fail "q4_k_m Q5_0 fallback"
grep -q "^blk.1.ffn_down.weight  *Q8_0  *\[64, 128\]  *8704$" "$out/info-q4_k_m.txt" || fail "q4_k_m Q8_0 fallback"
grep -q "^token_embd.weight  *Q8_0 " "$out/info-q4_k_m.txt" || fail "q4_k_m tied head"
grep -q "tokenizer.ggml.tokens  *array  *\[string x 512\] \"<unk>\", \"<s>\"" "$out/info-q4_0.txt" || fail "tokens"

# A q4_0 checkpoint holds q4_0's values; exporting it writes the same file as exporting its source (general.name,
# the directory's name, made the same).
mkdir -p "$out/quantized"
"$qtune" quantize --model "$sp" --scheme q4_0 --out "$out/quantized/tiny_llama_sp" >/dev/null
"$qtune" export --model "$out/quantized/tiny_llama_sp" --format gguf --type q4_0 --out "$out/requant.gguf" >/dev/null
cmp "$out/sp-q4_0.gguf" "$out/requant.gguf" || fail "the q4_0 checkpoint exports other bytes than its source"

# The GGUF is a model every command reads: generate and eval on the f32 file equal the directory's, and a q4_0 file
# computes as llama.cpp does with --as-llama-cpp.
gen() { "$qtune" generate --prompt "Once upon a time" --max-new-tokens 12 --temperature 0 "$@" 2>/dev/null; }
[ "$(gen --model "$out/sp-f32.gguf")" = "$(gen --model "$sp")" ] || fail "generate on the f32 GGUF differs"
# One line of single spaces: the tiny tokenizer collapses runs of whitespace, a GGUF "llama" vocabulary (as
# llama.cpp reads it) keeps them, and this text tokenizes the same either way.
tr -s ' \n' ' ' <"$src/tests/golden/tokenizers/train.txt" | sed 's/^ //; s/ $//' >"$out/text.txt"
ppl() { "$qtune" eval --data "$out/text.txt" --task llama-perplexity --seq-len 32 "$@" 2>/dev/null |
  sed -n 's/^perplexity  *//p'; }
[ "$(ppl --model "$out/sp-f32.gguf")" = "$(ppl --model "$sp")" ] || fail "llama-perplexity on the f32 GGUF differs"
q4=$(ppl --model "$out/sp-q4_0.gguf")
q4_cpp=$(ppl --model "$out/sp-q4_0.gguf" --as-llama-cpp)
echo "llama-perplexity: f32 $(ppl --model "$sp"), q4_0 $q4, q4_0 --as-llama-cpp $q4_cpp"
[ -n "$q4" ] && [ "$q4" != "$q4_cpp" ] || fail "--as-llama-cpp changed nothing"
expect_error "as-llama-cpp needs a GGUF --model" "$qtune" generate --model "$sp" --prompt x --as-llama-cpp

# Fine-tuning a GGUF: qat with ggml_q4_0 from the f32 file; qlora from the q4_0 and q4_k_m files (their blocks kept
# as the frozen base) and from the f16 file (NF4). The final model carries the tokenizer the file embedded, and
# exports back to GGUF with the command the run prints.
run_config() {  # run_config RECIPE MODEL EXTRA_KEYS
  cat >"$out/$1.json" <<JSON
{"recipe": "$1", "output_dir": "$out/run_$1", "model": {"path": "$2", "dtype": "f32"},
 "data": {"train": "$out/text.txt", "format": "text", "seq_len": 32, "batch_size": 2},
 "optim": {"name": "adamw", "lr": 1e-3}, "train": {"steps": 2, "log_every": 1}, $3}
JSON
  "$qtune" run "$1" --config "$out/$1.json" >"$out/run_$1.log" 2>&1 || { cat "$out/run_$1.log"; fail "run $1"; }
}
run_config qat "$out/sp-f32.gguf" '"quant": {"scheme": "ggml_q4_0"}'
run_config qlora "$out/sp-q4_0.gguf" '"lora": {"rank": 2, "alpha": 4, "targets": ["q_proj", "v_proj"]}'
grep -q "QLoRA: 0 frozen linears stored in NF4, 14 kept in the GGUF file's blocks" "$out/run_qlora.log" ||
  fail "qlora on a q4_0 file did not keep its blocks"
merge=$(grep "^  qtune export --model $out/sp-q4_0.gguf --adapter $out/run_qlora/final --format gguf --type q4_0 " \
  "$out/run_qlora.log") || fail "qlora's closing line"
${merge/  qtune/"$qtune"} >/dev/null
"$qtune" info "$out/run_qlora/final-merged.gguf" | grep "^blk.0.attn_q.weight  *Q4_0 " > /dev/null || fail "merged q4_0 file"
mv "$out/run_qlora.log" "$out/run_qlora_q4_0.log"
rm -rf "$out/run_qlora"
run_config qlora "$out/sp-q4_k_m.gguf" '"lora": {"rank": 2, "alpha": 4, "targets": ["q_proj", "v_proj"]}'
grep -q "14 kept in the GGUF file's blocks" "$out/run_qlora.log" || fail "qlora on a q4_k_m file"
rm -rf "$out/run_qlora"
run_config qlora "$out/sp-f16.gguf" '"lora": {"rank": 2, "alpha": 4, "targets": ["q_proj", "v_proj"]}'
grep -q "QLoRA: 14 frozen linears stored in NF4$" "$out/run_qlora.log" || fail "qlora on an f16 file: NF4"
grep -q "export it for llama.cpp (GGUF, the weights it trained with): qtune export --model $out/run_qat/final --format gguf --type q4_0" \
  "$out/run_qat.log" || fail "qat's closing line"
[ -f "$out/run_qat/final/tokenizer.model" ] || fail "the GGUF's tokenizer was not written into final/"
gen --model "$out/run_qat/final" >/dev/null || fail "generate on the final model"
"$qtune" export --model "$out/run_qat/final" --format gguf --type q4_0 --out "$out/run_qat.gguf" >/dev/null
"$qtune" export --model "$out/sp-f16.gguf" --adapter "$out/run_qlora/final" --base-nf4 --format gguf --type f16 \
  --out "$out/run_qlora.gguf" >/dev/null
"$qtune" export --model "$out/sp-f16.gguf" --format hf --out "$out/from_gguf" >/dev/null
[ -f "$out/from_gguf/tokenizer.model" ] || fail "hf export of a GGUF has no tokenizer"
[ "$(gen --model "$out/from_gguf")" = "$(gen --model "$out/sp-f16.gguf")" ] || fail "hf export of a GGUF generates otherwise"

# Errors.
expect_error "exists: choose another file or pass --force" \
  "$qtune" export --model "$sp" --format gguf --out "$out/sp-f16.gguf"
"$qtune" export --model "$sp" --format gguf --out "$out/sp-f16.gguf" --force >/dev/null
expect_error "is a directory: --format gguf writes one file" "$qtune" export --model "$sp" --format gguf --out "$out"
expect_error "format gguf takes --type" "$qtune" export --model "$sp" --format gguf --dtype bf16 --out "$out/x.gguf"
expect_error "type goes with --format gguf" "$qtune" export --model "$sp" --type q4_0 --out "$out/x"
expect_error "type: q4_k not in" "$qtune" export --model "$sp" --format gguf --type q4_k --out "$out/x.gguf"
mkdir -p "$out/no_tokenizer"
cp "$sp/config.json" "$sp/model.safetensors" "$out/no_tokenizer/"
expect_error "has no tokenizer.json or tokenizer.model, and llama.cpp cannot run a model without" \
  "$qtune" export --model "$out/no_tokenizer" --format gguf --out "$out/x.gguf"
[ ! -e "$out/x.gguf" ] || fail "a failed export left $out/x.gguf"
ls "$out" | grep -q "\.tmp\." && fail "a temporary file was left behind"

# A damaged file: cut short, then with a bad magic.
head -c $(($(stat -c %s "$out/sp-f32.gguf") - 100)) "$out/sp-f32.gguf" >"$out/cut.gguf"
expect_error "cut.gguf: .*runs past the end of the file" "$qtune" info "$out/cut.gguf"
head -c 3000 "$out/sp-f32.gguf" >"$out/cut2.gguf"
expect_error "cut2.gguf: tokenizer.ggml.tokens: an array of 512 string items does not fit" "$qtune" info "$out/cut2.gguf"

# A byte-level BPE model with Llama 3 RoPE scaling, untied, head_dim 12 (not hidden / heads).
mkdir -p "$out/bpe"
cp "$src/tests/golden/llama/untied_gqa_headdim/config.json" "$src/tests/golden/llama/untied_gqa_headdim/model.safetensors" \
  "$out/bpe/"
cp "$src/tests/cli/tiny_tokenizer.json" "$out/bpe/tokenizer.json"
"$qtune" export --model "$out/bpe" --format gguf --type f32 --out "$out/bpe.gguf" >/dev/null
"$qtune" info "$out/bpe.gguf" >"$out/info-bpe.txt"
grep -q "tokenizer.ggml.pre  *string  *\"gpt-2\"" "$out/info-bpe.txt" || fail "gpt-2 pre-tokenizer"
grep -q "llama.attention.key_length  *u32  *12" "$out/info-bpe.txt" || fail "key_length"
grep -q "^rope_freqs.weight  *F32  *\[6\]" "$out/info-bpe.txt" || fail "rope_freqs"
grep -q "^output.weight  *F32 " "$out/info-bpe.txt" || fail "untied output"
