// `qtune generate`: sample a continuation of a prompt from a Hugging Face model directory, printing
// the text as it is produced.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <qtune/qtune.h>

#include "qtune/commands.h"

namespace qtune::cli {
namespace {

struct GenerateArgs {
  std::string model_dir;
  std::string tokenizer;  // default: the model directory
  std::string adapter;    // a LoRA adapter applied un-merged
  std::string prompt;
  std::string dtype = "f32";
  std::string device = "cpu";
  int64_t max_new_tokens = 128;
  bool max_new_tokens_given = false;  // --max-new-tokens on the command line
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 0.95;
  uint64_t seed = 0;
  bool no_bos = false;
  bool as_llama_cpp = false;
};

int run_generate(const GenerateArgs& args) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (const std::string& dir : {args.model_dir, args.adapter}) recover_directory(dir);
  const auto tokenizer = data::load_tokenizer(args.tokenizer.empty() ? args.model_dir : args.tokenizer);
  models::LoadOptions load;
  load.dtype = dtype_from_name(args.dtype);
  load.device = parse_device(args.device);
  const auto model = models::load_model(args.model_dir, load);
  if (args.as_llama_cpp) apply_as_llama_cpp(args.model_dir, *model);
  if (!args.adapter.empty()) models::load_adapter(*model, args.adapter);
  QTUNE_CHECK(tokenizer->vocab_size() <= model->config().vocab_size, "the tokenizer has ", tokenizer->vocab_size(),
              " tokens but the model only ", model->config().vocab_size, " embeddings: do they belong together?");
  const auto t_loaded = clock::now();

  const std::vector<int32_t> prompt = tokenizer->encode(args.prompt, !args.no_bos);
  QTUNE_CHECK(!prompt.empty(), "the prompt is empty and the tokenizer has no bos token to start from");
  models::SamplingOptions sampling;
  // The default stops at the end of the context; a number the user asked for past it is an error (generate's).
  sampling.max_new_tokens =
      args.max_new_tokens_given
          ? args.max_new_tokens
          : std::min(args.max_new_tokens,
                     models::max_new_tokens_within(model->config(), static_cast<int64_t>(prompt.size())));
  sampling.temperature = args.temperature;
  sampling.top_k = args.top_k;
  sampling.top_p = args.top_p;
  sampling.seed = args.seed;
  if (auto eos = tokenizer->eos_id()) sampling.stop_ids.push_back(*eos);
  for (int32_t id : model->config().eos_token_ids) sampling.stop_ids.push_back(id);

  fmt::print("{}", args.prompt);
  std::fflush(stdout);
  data::StreamDecoder stream(*tokenizer, prompt);
  clock::time_point t_first{};
  int64_t produced = 0;
  models::generate(*model, prompt, sampling, [&](int32_t id) {
    if (produced++ == 0) t_first = clock::now();
    fmt::print("{}", stream.push(id));
    std::fflush(stdout);
    return true;
  });
  fmt::print("{}\n", stream.finish());
  std::fflush(stdout);  // the text ends before the statistics on a shared terminal
  const auto t_end = clock::now();

  const auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  const double decode_s = produced > 1 ? seconds(t_first, t_end) : 0.0;
  fmt::print(stderr,
             "[generate] load {:.2f} s; prompt {} tokens in {:.3f} s; {} new tokens, {:.1f} tokens/s after the first\n",
             seconds(t0, t_loaded), prompt.size(), produced > 0 ? seconds(t_loaded, t_first) : 0.0, produced,
             decode_s > 0 ? static_cast<double>(produced - 1) / decode_s : 0.0);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a model, streaming the text as it is sampled");
  auto args = std::make_shared<GenerateArgs>();
  cmd->add_option("--model", args->model_dir,
                  "Hugging Face model directory (config.json + safetensors), a quantized one (qtune quantize), or a "
                  "GGUF file (its embedded tokenizer)")
      ->required();
  cmd->add_option("--prompt", args->prompt, "text to continue")->required();
  cmd->add_option("--adapter", args->adapter, "LoRA adapter directory (HF PEFT layout), applied un-merged");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer file or directory (default: the model directory)");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "tokens to sample at most")
      ->capture_default_str()
      ->check(integer_in(0, kMaxCount));
  cmd->add_option("--temperature", args->temperature, "softmax temperature; 0 = greedy")
      ->capture_default_str()
      ->check(number_at_least(0.0));
  cmd->add_option("--top-k", args->top_k, "sample among the k likeliest tokens; 0 = all")
      ->capture_default_str()
      ->check(integer_in(0, kMaxCount));
  cmd->add_option("--top-p", args->top_p, "nucleus: the smallest set of tokens with this much probability")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", args->seed, "random seed (same seed, same text)")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "compute dtype: f32, bf16 or f16")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  add_device_option(cmd, args->device);
  cmd->add_flag("--no-bos", args->no_bos, "do not start the prompt with the bos token");
  add_as_llama_cpp_flag(cmd, args->as_llama_cpp);
  cmd->callback([cmd, args, &status] {
    args->max_new_tokens_given = cmd->count("--max-new-tokens") > 0;
    status = run_generate(*args);
  });
}

}  // namespace qtune::cli
