# Sourced by the export tests: make_lora_base SOURCE_DIR DIR makes DIR the base of the golden PEFT adapter
# (tests/golden/lora/peft_adapter: the tiny untied Llama of tests/golden/llama/untied_mha) plus an 83-token
# byte-level BPE tokenizer (tests/cli/tiny_tokenizer.json) that fits its 83 embeddings, so eval, generate
# and transformers can run text through it. Then: $adapter, the golden adapter.
make_lora_base() {
  local src=$1 dir=$2
  mkdir -p "$dir"
  cp "$src/tests/golden/llama/untied_mha/config.json" "$src/tests/golden/llama/untied_mha/model.safetensors" \
     "$src/tests/golden/llama/untied_mha/generation_config.json" "$dir/"
  cp "$src/tests/cli/tiny_tokenizer.json" "$dir/tokenizer.json"
  adapter=$src/tests/golden/lora/peft_adapter
}
