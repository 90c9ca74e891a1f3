#pragma once
// The configuration of a `qtune run` recipe: a JSON file (docs/config.md; examples in configs/) plus
// dotted `key=value` overrides. Every key is known: an unknown one fails with its name and the
// nearest valid key ("unknown key optim.lrr (did you mean optim.lr?)").
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/llama_config.h"
#include "quant/float8.h"
#include "quant/qat_config.h"
#include "tools/recipes/recipe.h"

namespace qtune::recipes {

struct ModelSection {
  std::string path;                           // an HF model directory, or empty with `config`
  std::optional<models::LlamaConfig> config;  // inline config.json object (a model trained from scratch)
  std::string tokenizer;                      // tokenizer file/dir; default: the model directory
  std::string dtype = "f32";                  // compute dtype: f32 | bf16
  std::string master_dtype;                   // what the optimizer updates: "" (as dtype) | f32 | bf16
  bool tf32 = false;                          // f32 GEMMs on cuda read TF32 inputs (docs/numerics.md §6)
};

struct DataSection {
  std::string train;            // a file (text, .jsonl, or token shard) or a directory of shards
  std::string eval;             // optional held-out data in the same format
  std::string format = "text";  // text | jsonl | tokens
  int64_t seq_len = 256;
  int64_t batch_size = 8;
  std::string prompt_template = "alpaca";  // jsonl: alpaca | chat
  bool train_on_input = false;
  bool pack = true;
  bool skip_bad_lines = false;
  std::string document_separator;  // text: a line equal to this ends a document ("%" for fortunes)
};

struct OptimSection {
  std::string name = "adamw";  // adamw | sgd
  double lr = 3e-4;
  double weight_decay = 0.0;
  std::vector<double> betas{0.9, 0.95};  // adamw
  double eps = 1e-8;
  double momentum = 0.0;   // sgd
  bool nesterov = false;   // sgd
  double grad_clip = 1.0;  // global-norm clipping; 0 disables
};

struct ScheduleSection {
  std::string name = "cosine";  // constant | linear | cosine
  int64_t warmup_steps = 0;
  double min_lr = 0.0;
};

struct TrainSection {
  int64_t steps = 0;  // optimizer steps; 0: derived from epochs
  double epochs = 0;  // used when steps == 0
  int64_t grad_accum = 1;
  uint64_t seed = 0;
  bool activation_checkpointing = false;
  int64_t eval_every = 0;        // 0: eval only at the end (when data.eval is set)
  int64_t eval_batches = 0;      // 0: the whole eval set
  int64_t save_every = 0;        // 0: save only at the end
  int64_t keep_checkpoints = 2;  // newest complete checkpoints kept on disk (>= 1)
  bool resume = false;
  int64_t log_every = 1;
};

// Quantization-aware training (recipes qat, qat_lora): the fake quantization the prepared linears train through.
struct QuantSection {
  // quant.scheme (8da4w | int4wo | q4_0 | q8_0 | ggml_q4_0 | ggml_q8_0) with quant.group_size applied: what the recipes
  // use.
  quant::LinearScheme scheme = quant::Int8DynActInt4Weight{};
  int64_t group_size = 0;                // quant.group_size as written: 0 takes the scheme's default
  int64_t fake_quant_after_n_steps = 0;  // plain float steps before fake quantization switches on
};

// LoRA adapters (recipes lora, qlora, qat_lora; docs/numerics.md §4): only the adapters train.
struct LoraSection {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;                                  // on the adapter branch's input, while training
  std::vector<std::string> targets{"q_proj", "v_proj"};  // q/k/v/o_proj, gate/up/down_proj, lm_head
};

// Float8 training (any recipe but qat): the linears' GEMMs run through fp8 (docs/numerics.md §3).
struct Fp8Section {
  std::optional<quant::Float8Recipe>
      recipe;  // unset ("" in a file): off; else tensorwise | rowwise | rowwise_with_gw_hp
};

struct DistSection {
  double timeout_s = 30;             // a collective still unfinished this long after it started stops every rank
  bool check_calls = false;          // ranks compare each collective's kind and sizes before it (debugging a hang)
  bool sharded_checkpoints = false;  // under FSDP each rank writes its own pieces (tools/recipes/sharded_checkpoint.h)
  bool offload = false;              // GPU ranks keep their shards and optimizer state in host memory
  std::string reduce_dtype;          // what FSDP sums gradients across ranks in: "" (as the weights) | f32
};

struct RunConfig {
  Recipe recipe = Recipe::full;
  ModelSection model;
  DataSection data;
  OptimSection optim;
  ScheduleSection schedule;
  TrainSection train;
  QuantSection quant;
  LoraSection lora;
  Fp8Section fp8;
  DistSection dist;
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string output_dir = "qtune-run";
};

// Parses a config: JSON text (source names it in errors), then applies `overrides` ("a.b=value": value
// parsed as JSON when it parses, else taken as a string; "model.config.<field>=value" edits the inline
// config.json), then checks the values (ranges, known names, model.path xor model.config). Errors name
// the source, the dotted key and the expected type; unknown keys name the nearest valid key (edit distance).
// `command_recipe` is the recipe a command names (`qtune run lora`): a config without a `recipe` key (in
// the file or an override) takes it, and one whose `recipe` names another is an error. Without it the
// config's own recipe counts (full when it has none).
RunConfig parse_run_config(const std::string& json_text, const std::string& source,
                           const std::vector<std::string>& overrides = {},
                           std::optional<Recipe> command_recipe = std::nullopt);
// A config file: relative input paths in it (model.path, model.tokenizer, data.train, data.eval) are
// resolved against the file's directory, so a config travels with its data; output_dir and every path
// given in an override stay relative to the current directory.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {},
                          std::optional<Recipe> command_recipe = std::nullopt);
// The config as JSON (what a run stores as output_dir/config.json, and what resume compares against). The
// quant section is written as its keys: the scheme's name and quant.group_size, which must give back
// quant.scheme (an Error otherwise: a config built in code that set one and not the other).
std::string run_config_to_json(const RunConfig& config);
// Every valid dotted key, for docs and "did you mean".
std::vector<std::string> run_config_keys();
// True for the keys that name input files (compared by the file they reach, not their spelling).
bool is_run_config_input_path(const std::string& key);
// Whether a key means anything to a recipe: quant.* only to the fake-quantizing ones, lora.* only to those that
// train adapters. A config that sets a key its recipe ignores is refused; run_config_to_json leaves such keys out.
bool applies(Recipe recipe, const std::string& key);
// Mixed precision: bf16 compute with f32 master weights in the optimizer (model.dtype=bf16,
// model.master_dtype=f32; docs/numerics.md, "Mixed precision").
bool keeps_f32_masters(const RunConfig& config);

}  // namespace qtune::recipes
