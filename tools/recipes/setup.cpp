#include "tools/recipes/setup.h"

#include <algorithm>
#include <filesystem>

#include "data/instruction_data.h"
#include "data/text_corpus.h"
#include "data/token_shards.h"
#include "engine/check.h"
#include "engine/io/gguf_file.h"
#include "engine/module.h"
#include "models/gguf_import.h"
#include "models/hf_checkpoint.h"
#include "models/quantize_model.h"
#include "models/quantizing_loader.h"
#include "optim/adamw.h"
#include "optim/sgd.h"
#include "tools/recipes/checkpoint.h"
#include "tools/recipes/model_passes.h"

namespace qtune::recipes {
namespace {

namespace fs = std::filesystem;

// A shard file, or every regular file of a directory (in name order, hidden files skipped).
std::vector<data::TokenShard> open_shards(const std::string& path, int64_t vocab_size) {
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file() && entry.path().filename().string().front() != '.') {
        files.push_back(entry.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    QTUNE_CHECK(!files.empty(), "data directory ", path, " holds no token shards");
  } else {
    files.push_back(path);
  }
  std::vector<data::TokenShard> shards;
  for (const std::string& file : files) {
    data::TokenShard shard = data::TokenShard::open(file);
    QTUNE_CHECK(shard.vocab_size() <= vocab_size, file, " holds tokens of a ", shard.vocab_size(),
                "-token vocabulary but the model has ", vocab_size, " embeddings: was it tokenized for this model?");
    shards.push_back(std::move(shard));  // from_shards validates every token against the shard's vocabulary
  }
  return shards;
}

}  // namespace

std::string tokenizer_source(const RunConfig& config) {
  return config.model.tokenizer.empty() ? config.model.path : config.model.tokenizer;
}

models::LlamaOptions model_options(const RunConfig& config) {
  models::LlamaOptions options;
  options.dtype = dtype_from_name(config.model.dtype);
  options.device = parse_device(config.device);
  options.seed = config.train.seed;
  options.activation_checkpointing = config.train.activation_checkpointing;
  return options;
}

std::shared_ptr<models::Llama> model_skeleton(const std::string& dir, const RunConfig& config) {
  const models::LlamaConfig model_config = models::load_llama_config(dir);
  SkipInitGuard no_init;  // models::load_llama_weights fills every parameter next
  return std::make_shared<models::Llama>(model_config, model_options(config));
}

namespace {

// The storage a LoRA recipe's frozen base takes, when the loader can give it to every decoder projection:
// NF4 for qlora (the head too when it carries an adapter); e4m3 for lora with fp8.recipe when all projection dims are
// multiples of 16 (otherwise the float8 pass leaves some in high precision, which a loader of uniform schemes cannot).
std::optional<quant::ModelQuantization> streamed_base(const RunConfig& config) {
  if (config.recipe == Recipe::qlora) return qlora_base(config);
  if (config.recipe != Recipe::lora || !config.fp8.recipe) return std::nullopt;
  const models::LlamaConfig c = io::is_gguf_file(config.model.path)
                                    ? models::llama_config_from_gguf(io::GgufFile::open(config.model.path))
                                    : models::load_llama_config(config.model.path);
  const int64_t d = c.resolved_head_dim();
  for (const int64_t dim : {c.hidden_size, c.intermediate_size, c.num_attention_heads * d, c.num_key_value_heads * d}) {
    if (dim % 16 != 0) return std::nullopt;
  }
  return quant::ModelQuantization{quant::Float8Weights{quant::Float8LinearConfig::from_recipe(*config.fp8.recipe)}};
}

}  // namespace

std::shared_ptr<models::Llama> initial_model(const RunConfig& config) {
  if (config.model.config) {
    const models::LlamaOptions options = model_options(config);
    if (options.device.is_cpu()) {
      models::check_fits_memory(*config.model.config, double(dtype_size(options.dtype)),
                                "model.config (in " + std::string(dtype_name(options.dtype)) + ")");
    }
    return std::make_shared<models::Llama>(*config.model.config, options);
  }
  const models::LlamaOptions options = model_options(config);
  if (io::is_gguf_file(config.model.path)) {
    // Dequantized whole, then the frozen base stored as the recipe wants it.
    const auto frozen = streamed_base(config);
    QTUNE_CHECK(!frozen || options.device.is_cpu(), "model.path ", config.model.path, ": a GGUF model's ",
                recipe_name(config.recipe), " base is quantized on the CPU; for device=", config.device,
                " convert it first (qtune export --model FILE.gguf --format hf --out DIR) and train from DIR");
    models::LoadOptions load;
    load.dtype = options.dtype;
    load.device = options.device;
    load.activation_checkpointing = options.activation_checkpointing;
    // QLoRA on a quantized file keeps the file's blocks as the frozen base: the weights llama.cpp runs, in the
    // file's size, not a second quantization to NF4 (float projections, if any, still go to NF4).
    const bool keep =
        config.recipe == Recipe::qlora && models::gguf_has_quantized_linears(io::GgufFile::open(config.model.path));
    auto model = models::load_gguf_llama(config.model.path, load, keep);
    if (frozen) models::quantize_llama(*model, *frozen);
    return model;
  }
  QTUNE_CHECK(fs::is_directory(config.model.path), "model.path ", config.model.path,
              " not found (a Hugging Face model directory: config.json + safetensors, or a GGUF file)");
  if (const auto frozen = streamed_base(config)) {
    // Each frozen projection is stored as it is read: the full-precision base never sits in memory (on a
    // GPU: one projection at a time is uploaded and quantized there).
    models::LoadOptions load;
    load.dtype = options.dtype;
    load.device = options.device;
    load.activation_checkpointing = options.activation_checkpointing;
    return models::load_llama_quantized(config.model.path, *frozen, load);
  }
  auto model = model_skeleton(config.model.path, config);
  models::load_llama_weights(*model, config.model.path);
  return model;
}

std::shared_ptr<models::Llama> reserved_model(const RunConfig& config, const std::string& dir) {
  const models::LlamaOptions options = model_options(config);
  if ((config.recipe == Recipe::lora && config.fp8.recipe) || io::is_gguf_file(dir)) return nullptr;
  models::LoadOptions load;
  load.dtype = options.dtype;
  load.device = options.device;
  load.activation_checkpointing = options.activation_checkpointing;
  if (config.recipe == Recipe::qlora) {
    const quant::ModelQuantization base = qlora_base(config);
    return models::load_llama_reserved(dir, &base, load);
  }
  return models::load_llama_reserved(dir, nullptr, load);
}

data::DataLoader make_loader(const RunConfig& config, const std::string& path, const data::Tokenizer& tokenizer,
                             int64_t vocab_size, const std::function<void(const std::string&)>& note) {
  const DataSection& d = config.data;
  QTUNE_CHECK(fs::exists(path), "data file ", path, " not found");
  const uint64_t seed = config.train.seed;
  // The loader's own errors (too little data for one batch) do not know the file: name it.
  const auto named = [&](auto&& make) {
    try {
      return make();
    } catch (const Error& e) {
      QTUNE_FAIL(path, ": ", e.what());
    }
  };
  if (d.format == "tokens") {
    auto shards = open_shards(path, vocab_size);
    return named([&] { return data::DataLoader::from_shards(std::move(shards), d.seq_len, d.batch_size, seed); });
  }
  if (d.format == "text") {
    auto tokens = data::tokenize_text_file(path, tokenizer, {.document_separator = d.document_separator});
    return named([&] { return data::DataLoader::from_tokens(std::move(tokens), d.seq_len, d.batch_size, seed); });
  }
  data::InstructionOptions options;
  options.prompt_template = d.prompt_template;
  options.train_on_input = d.train_on_input;
  options.max_seq_len = d.seq_len;
  options.skip_bad_lines = d.skip_bad_lines;
  data::InstructionData data = data::load_instruction_jsonl(path, tokenizer, options);
  if (data.skipped_lines > 0 && note)
    note(path + ": skipped " + std::to_string(data.skipped_lines) + " malformed lines");
  if (data.dropped_examples > 0 && note) {
    note(path + ": dropped " + std::to_string(data.dropped_examples) + " examples whose prompt fills data.seq_len");
  }
  return named([&] {
    return data::DataLoader::from_examples(std::move(data.examples), d.seq_len, d.batch_size, seed, d.pack,
                                           tokenizer.eos_id().value_or(0));
  });
}

std::unique_ptr<optim::Optimizer> make_optimizer(const OptimSection& o, std::vector<Tensor> params) {
  if (o.name == "sgd") {
    optim::SGDOptions options;
    options.lr = o.lr;
    options.momentum = o.momentum;
    options.nesterov = o.nesterov;
    options.weight_decay = o.weight_decay;
    return std::make_unique<optim::SGD>(std::move(params), options);
  }
  QTUNE_CHECK(o.name == "adamw", "optim.name: unknown optimizer \"", o.name, "\" (adamw | sgd)");
  optim::AdamWOptions options;
  options.lr = o.lr;
  options.beta1 = o.betas.at(0);
  options.beta2 = o.betas.at(1);
  options.eps = o.eps;
  options.weight_decay = o.weight_decay;
  return std::make_unique<optim::AdamW>(std::move(params), options);
}

}  // namespace qtune::recipes
