// `qtune eval`: perplexity of a text corpus, or multiple-choice accuracy on a hellaswag-format file, for
// a Hugging Face model directory (models/evaluate.h), optionally with a LoRA adapter applied un-merged; or
// the logits of one prompt as JSON (--dump-logits), which tools/check_hf_export.py compares to transformers'.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <qtune/qtune.h>
#include <nlohmann/json.hpp>

#include "qtune/commands.h"

namespace qtune::cli {
namespace {

using clock = std::chrono::steady_clock;

struct EvalArgs {
  std::string model_dir;
  std::string data;
  std::string task = "perplexity";
  std::string dtype = "f32";
  std::string device = "cpu";
  int64_t seq_len = 0;
  int64_t batch_size = 0;
  int64_t limit = 0;
  bool json = false;
  std::string quantize;  // a scheme applied in memory after loading
  std::string adapter;   // a LoRA adapter directory, applied after quantizing
  std::string dump_logits, prompt;
  std::optional<int64_t> group_size;
  bool as_llama_cpp = false;
};

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

// Progress on stderr once a run takes a while: redrawn in place on a terminal (at most a few times a
// second), a line every 10 s otherwise (logs).
class ProgressLine {
 public:
  explicit ProgressLine(std::string unit) : unit_(std::move(unit)), tty_(isatty(STDERR_FILENO) != 0) {}
  ~ProgressLine() {
    if (drawn_ && tty_) fmt::print(stderr, "\n");
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void operator()(int64_t done, int64_t total) {
    const double now = seconds_since(start_);
    if (now < kQuietSeconds || now - last_ < (tty_ ? kTerminalEvery : kLogEvery)) return;
    last_ = now;
    drawn_ = true;
    fmt::print(stderr, "{}[eval] {}/{} {} in {:.0f} s", tty_ ? "\r" : "", done, total, unit_, now);
    fmt::print(stderr, "{}", tty_ ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  static constexpr double kQuietSeconds = 2.0, kTerminalEvery = 0.25, kLogEvery = 10.0;
  std::string unit_;
  bool tty_;
  clock::time_point start_ = clock::now();
  double last_ = 0.0;
  bool drawn_ = false;
};

// name, value (as JSON, so integers stay integers), table format
struct Metric {
  const char* name;
  nlohmann::json value;
  const char* format;
};

void print_metrics(const std::vector<Metric>& metrics, bool as_json) {
  if (as_json) {
    nlohmann::ordered_json out;
    for (const Metric& m : metrics) out[m.name] = m.value;
    fmt::print("{}\n", out.dump());
    return;
  }
  for (const Metric& m : metrics) {
    const std::string value =
        m.value.is_number_float() ? fmt::format(fmt::runtime(m.format), m.value.get<double>()) : m.value.dump();
    fmt::print("{:<18} {}\n", m.name, value);
  }
}

void run_hellaswag(const EvalArgs& args, models::Llama& model, const data::Tokenizer& tokenizer) {
  const auto t_start = clock::now();
  models::MultipleChoiceResult r;
  {
    ProgressLine progress("endings");
    r = models::evaluate_multiple_choice(model, tokenizer, args.data, args.limit, std::ref(progress), args.batch_size);
  }
  print_metrics({{"examples", r.examples, ""},
                 {"acc", r.acc, "{:.4f}"},
                 {"acc_norm", r.acc_norm, "{:.4f}"},
                 {"seconds", seconds_since(t_start), "{:.2f}"}},
                args.json);
}

void run_perplexity(const EvalArgs& args, models::Llama& model, const data::Tokenizer& tokenizer) {
  std::vector<std::string> documents = data::load_eval_documents(args.data);
  if (args.limit > 0 && static_cast<int64_t>(documents.size()) > args.limit)
    documents.resize(static_cast<size_t>(args.limit));
  const auto t_start = clock::now();
  models::PerplexityResult r;
  {
    ProgressLine progress("windows");
    // A Llama 3 context (131072) as one window would need gigabytes of logits per row: default to at
    // most 4096 tokens, which scores every token all the same.
    const int64_t window =
        args.seq_len > 0 ? args.seq_len : std::min<int64_t>(model.config().max_position_embeddings, 4096);
    r = models::evaluate_perplexity(model, tokenizer, documents, window, std::ref(progress), args.batch_size);
  }
  const double seconds = seconds_since(t_start);
  QTUNE_CHECK(r.tokens > 0, "eval data ", args.data, " has no token to score");
  print_metrics({{"documents", r.documents, ""},
                 {"tokens", r.tokens, ""},
                 {"words", r.words, ""},
                 {"bytes", r.bytes, ""},
                 {"log_likelihood", r.log_likelihood, "{:.4f}"},
                 {"token_loss", r.token_loss(), "{:.4f}"},
                 {"token_perplexity", r.token_perplexity(), "{:.4f}"},
                 {"word_perplexity", r.word_perplexity(), "{:.4f}"},
                 {"byte_perplexity", r.byte_perplexity(), "{:.4f}"},
                 {"bits_per_byte", r.bits_per_byte(), "{:.4f}"},
                 {"seconds", seconds, "{:.2f}"},
                 {"tokens_per_second", static_cast<double>(r.tokens) / seconds, "{:.1f}"}},
                args.json);
}

// llama-perplexity's figure on the same text: --data is one text file, --seq-len its -c (default 512).
void run_llama_cpp_perplexity(const EvalArgs& args, models::Llama& model, const data::Tokenizer& tokenizer) {
  const std::vector<std::string> documents = data::load_eval_documents(args.data);
  QTUNE_CHECK(documents.size() == 1, "--task llama-perplexity reads one text (a .txt file, as llama-perplexity -f), ",
              args.data, " holds ", documents.size(), " documents");
  const auto t_start = clock::now();
  models::ChunkedPerplexity r;
  {
    ProgressLine progress("chunks");
    r = models::evaluate_llama_cpp_perplexity(model, tokenizer, documents[0], args.seq_len > 0 ? args.seq_len : 512,
                                              std::ref(progress), args.batch_size);
  }
  const double seconds = seconds_since(t_start);
  print_metrics({{"chunks", r.chunks, ""},
                 {"scored_tokens", r.scored, ""},
                 {"log_likelihood", r.log_likelihood, "{:.4f}"},
                 {"perplexity", r.perplexity(), "{:.4f}"},
                 {"seconds", seconds, "{:.2f}"}},
                args.json);
}

// {"tokens": [T], "logits": [T][V]} of the prompt (bos first), written atomically.
void dump_logits(const EvalArgs& args, models::Llama& model, const data::Tokenizer& tokenizer) {
  const std::vector<int32_t> ids = tokenizer.encode(args.prompt, true);
  QTUNE_CHECK(!ids.empty(), "--prompt is empty and the tokenizer has no bos token to start from");
  const int64_t length = static_cast<int64_t>(ids.size()), vocab = model.config().vocab_size;
  Tensor logits;  // [1, T, V]
  {
    NoGradGuard no_grad;
    EvalModeGuard eval(model);
    logits = model.forward(
        Tensor::from_vector(std::vector<int64_t>(ids.begin(), ids.end()), {1, length}, model.options().device));
  }
  const std::vector<float> values = logits.to(DType::f32).contiguous().to_vector<float>();
  nlohmann::ordered_json out;
  out["model"] = args.model_dir;
  out["adapter"] = args.adapter;
  out["prompt"] = args.prompt;
  out["tokens"] = ids;
  for (int64_t t = 0; t < length; ++t)
    out["logits"].push_back(std::vector<float>(values.begin() + t * vocab, values.begin() + (t + 1) * vocab));
  io::write_file_atomic(args.dump_logits, out.dump() + "\n");
  fmt::print("wrote the logits of {} tokens to {}\n", length, args.dump_logits);
}

int run_eval(const EvalArgs& args) {
  const auto t0 = clock::now();
  QTUNE_CHECK(args.dump_logits.empty() == args.prompt.empty(), "--dump-logits and --prompt go together");
  QTUNE_CHECK(!args.data.empty() || !args.dump_logits.empty(), "--data is required (or --dump-logits with --prompt)");
  for (const std::string& dir : {args.model_dir, args.adapter}) recover_directory(dir);
  const auto tokenizer = data::load_tokenizer(args.model_dir);
  models::LoadOptions load;
  load.dtype = dtype_from_name(args.dtype);
  load.device = parse_device(args.device);
  std::shared_ptr<models::Llama> model;
  if (!args.quantize.empty()) {
    QTUNE_CHECK(!models::read_quantization_config(args.model_dir), args.model_dir,
                " is already a quantized checkpoint: --quantize needs a full-precision model");
    const quant::ModelQuantization q{quant::parse_weight_scheme(args.quantize, args.group_size)};
    model = models::load_llama_quantized(args.model_dir, q, load);  // never the whole float model in memory
    fmt::print(stderr, "[eval] decoder projections quantized with {} while loading\n",
               quant::weight_scheme_name(q.scheme));
  } else {
    QTUNE_CHECK(!args.group_size, "--group-size goes with --quantize");
    model = models::load_model(args.model_dir, load);
  }
  if (args.as_llama_cpp) apply_as_llama_cpp(args.model_dir, *model);
  if (!args.adapter.empty()) {
    models::load_adapter(*model, args.adapter);
    const models::LoraConfig lora = models::load_adapter_config(args.adapter);
    fmt::print(stderr, "[eval] adapter {}: {} modules, rank {}, alpha {}\n", args.adapter,
               models::lora_modules(*model).size(), lora.rank, lora.alpha);
  }
  QTUNE_CHECK(tokenizer->vocab_size() <= model->config().vocab_size, "the tokenizer has ", tokenizer->vocab_size(),
              " tokens but the model only ", model->config().vocab_size, " embeddings: do they belong together?");
  fmt::print(stderr, "[eval] model loaded in {:.2f} s\n", seconds_since(t0));
  if (!args.dump_logits.empty())
    dump_logits(args, *model, *tokenizer);
  else if (args.task == "hellaswag")
    run_hellaswag(args, *model, *tokenizer);
  else if (args.task == "llama-perplexity")
    run_llama_cpp_perplexity(args, *model, *tokenizer);
  else
    run_perplexity(args, *model, *tokenizer);
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("eval", "Perplexity of a corpus, or multiple-choice accuracy (hellaswag format)");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option(
         "--model", args->model_dir,
         "Hugging Face model directory (config.json, safetensors, tokenizer), a quantized one (qtune quantize), or a "
         "GGUF file")
      ->required();
  cmd->add_option("--data", args->data,
                  "perplexity: .jsonl with a \"text\" per line, or a text file (one document); "
                  "hellaswag: .jsonl with ctx, endings, label (required unless --dump-logits)");
  cmd->add_option("--task", args->task,
                  "what to measure (llama-perplexity: llama.cpp's llama-perplexity protocol on one text, --seq-len its "
                  "-c, default 512)")
      ->capture_default_str()
      ->check(CLI::IsMember({"perplexity", "hellaswag", "llama-perplexity"}));
  cmd->add_option("--seq-len", args->seq_len,
                  "perplexity window in tokens; 0 = the model's max_position_embeddings, at most 4096")
      ->capture_default_str()
      ->check(integer_in(0, kMaxCount));
  cmd->add_option("--batch-size", args->batch_size, "windows per forward; 0 = as many as fit ~256 MiB of logits")
      ->capture_default_str()
      ->check(integer_in(0, kMaxCount));
  cmd->add_option("--limit", args->limit, "score only the first N documents / examples; 0 = all")
      ->capture_default_str()
      ->check(integer_in(0, kMaxCount));
  add_device_option(cmd, args->device);
  cmd->add_option("--dtype", args->dtype, "compute dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--quantize", args->quantize,
                  "quantize the decoder projections in memory after loading (8da4w, int4wo, nf4, q4_0, q8_0) and "
                  "evaluate with the quantized kernels");
  cmd->add_option("--group-size", args->group_size, "with --quantize: the 8da4w / int4wo group size");
  cmd->add_option("--adapter", args->adapter,
                  "LoRA adapter directory (HF PEFT layout), applied un-merged on top of the model (after --quantize)");
  cmd->add_option("--dump-logits", args->dump_logits,
                  "instead of --data: write the logits of --prompt as JSON (tokens, logits [T][V]) to this file");
  cmd->add_option("--prompt", args->prompt, "with --dump-logits: the text (bos first)");
  add_as_llama_cpp_flag(cmd, args->as_llama_cpp);
  cmd->add_flag("--json", args->json, "print one JSON object (keys: the metric names) instead of a table");
  cmd->callback([args, &status] { status = run_eval(*args); });
}

}  // namespace qtune::cli
