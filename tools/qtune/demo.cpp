#include "qtune/demo.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/gguf_file.h"
#include "models/evaluate.h"
#include "models/gguf_export.h"
#include "models/gguf_import.h"
#include "models/hf_checkpoint.h"
#include "qtune/demo_corpus.h"
#include "quant/qat_config.h"
#include "tools/recipes/model_passes.h"
#include "tools/recipes/progress.h"
#include "tools/recipes/trainer.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Small enough to pretrain in a few minutes on 2 cores; every linear's in_features divides by 32, the
// Q4_0 block.
models::LlamaConfig demo_model_config(int64_t vocab_size) {
  models::LlamaConfig config;
  config.vocab_size = vocab_size;
  config.hidden_size = 256;
  config.intermediate_size = 768;
  config.num_hidden_layers = 4;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 4;
  config.max_position_embeddings = 256;
  config.rms_norm_eps = 1e-5;
  config.tie_word_embeddings = true;
  return config;
}

recipes::RunConfig base_run(const DemoOptions& options, const std::string& train_file, const std::string& eval_file,
                            const std::string& dtype) {
  recipes::RunConfig run;
  run.model.dtype = dtype;
  if (dtype != "f32") run.model.master_dtype = "f32";
  run.data.train = train_file;
  run.data.eval = eval_file;
  run.data.format = "text";
  run.data.document_separator = std::string(1, '%');  // not = "%": GCC 12 -Wrestrict false positive
  run.data.seq_len = 128;
  run.data.batch_size = 16;
  run.optim.weight_decay = 0.1;
  run.optim.betas = {0.9, 0.95};
  run.optim.grad_clip = 1.0;
  run.train.seed = options.seed;
  run.train.eval_batches = 8;
  run.train.log_every = 50;
  run.train.eval_every = 200;
  return run;
}

// recipes::train, with the run's model passes and `qtune run`'s progress display on stderr.
recipes::TrainResult train_with_progress(const recipes::RunConfig& run) {
  recipes::ProgressDisplay progress(stderr, isatty(fileno(stderr)) != 0, run.train.log_every);
  recipes::TrainHooks hooks;
  recipes::add_model_passes(run, hooks);
  hooks.on_step = [&](const recipes::StepMetrics& m) { progress.on_step(m); };
  hooks.on_eval = [&](int64_t step, double eval_loss) { progress.on_eval(step, eval_loss); };
  recipes::TrainResult result = recipes::train(run, hooks);
  progress.finish();
  return result;
}

struct Row {
  std::string name;
  double word_perplexity = NAN;
};

// Held-out word perplexity of a model directory, or of the GGUF q4_0 file exported from it: that one computes as
// llama.cpp's CPU backend does (Q4_0 weights, Q8_0-block inputs, the Q8_0 embedding as the tied head), which is
// post-training quantization for a plainly trained model and exactly the training's numerics for a ggml_q4_0 one.
double heldout_word_perplexity(const std::string& model_dir, const std::vector<std::string>& heldout,
                               const std::string& gguf = "") {
  std::shared_ptr<models::Llama> model;
  if (gguf.empty()) {
    model = models::load_llama(model_dir);
  } else {
    model = models::load_gguf_llama(gguf);
    models::compute_as_llama_cpp(*model, io::GgufFile::open(gguf));
  }
  const auto tokenizer = data::load_tokenizer(model_dir);
  return models::evaluate_perplexity(*model, *tokenizer, heldout, model->config().max_position_embeddings)
      .word_perplexity();
}

// The model of `model_dir` as a GGUF q4_0 file beside it (out/<name>-q4_0.gguf).
std::string export_q4_0(const std::string& model_dir, const data::Tokenizer& tokenizer, const fs::path& path) {
  const auto model = models::load_llama(model_dir);
  models::save_gguf(*model, path.string(),
                    {.type = models::GgufFileType::q4_0, .tokenizer = &tokenizer, .name = path.stem().string()});
  return path.string();
}

std::string format_table(const std::vector<Row>& rows, double float_ppl) {
  std::string table = "| model | held-out word perplexity | vs fine-tuned float |\n|---|---|---|\n";
  for (const auto& row : rows) {
    const std::string ppl = fmt::format("{:.2f}", row.word_perplexity);
    std::string delta;
    if (row.name != "fine-tuned, float") {
      delta = fmt::format("{:+.2f} ({:+.1f}%)", row.word_perplexity - float_ppl,
                          100.0 * (row.word_perplexity / float_ppl - 1.0));
    }
    table += fmt::format("| {} | {} | {} |\n", row.name, ppl, delta);
  }
  return table;
}

}  // namespace

int run_demo(const DemoOptions& options) {
  // Line-buffered even into a pipe or log, so the stage lines stay in order with the progress on stderr.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const auto start = Clock::now();
  const fs::path out = options.out_dir;
  fs::create_directories(out / "corpus");

  // 1. Corpus.
  const DemoCorpus corpus = read_demo_corpus(options.corpus_dir, options.heldout_fraction, options.seed);
  const std::string train_file = (out / "corpus" / "train.txt").string();
  const std::string heldout_file = (out / "corpus" / "heldout.txt").string();
  write_documents(train_file, corpus.train);
  write_documents(heldout_file, corpus.heldout);
  fmt::print("qtune demo: {} fortunes from {} files in {} ({} held out{})\n",
             corpus.train.size() + corpus.heldout.size(), corpus.files, options.corpus_dir, corpus.heldout.size(),
             corpus.skipped ? fmt::format(", {} skipped: not UTF-8", corpus.skipped) : "");

  const std::string dtype = options.dtype != "auto"                               ? options.dtype
                            : backend_for(Device::cpu()).gemm_native(DType::bf16) ? "bf16"
                                                                                  : "f32";
  fmt::print("training in {} (bf16 GEMMs on this CPU: {})\n", dtype == "f32" ? "f32" : "bf16 with f32 master weights",
             backend_for(Device::cpu()).gemm_path(DType::bf16));

  // 2. Tokenizer.
  auto phase = Clock::now();
  const std::string tokenizer_file = (out / "tokenizer.model").string();
  data::train_sentencepiece(train_file, tokenizer_file, {.vocab_size = options.vocab_size, .seed = options.seed});
  const auto tokenizer = data::load_sentencepiece(tokenizer_file);
  fmt::print("[1/4] tokenizer: SentencePiece BPE, {} tokens ({:.1f} s) -> {}\n", tokenizer->vocab_size(),
             seconds_since(phase), tokenizer_file);

  // 3. Pretraining from scratch.
  phase = Clock::now();
  recipes::RunConfig pretrain = base_run(options, train_file, heldout_file, dtype);
  pretrain.model.config = demo_model_config(tokenizer->vocab_size());
  pretrain.model.tokenizer = tokenizer_file;
  pretrain.optim.lr = 2e-3;
  pretrain.schedule = {.name = "cosine", .warmup_steps = options.pretrain_steps / 10, .min_lr = 2e-4};
  pretrain.train.steps = options.pretrain_steps;
  pretrain.output_dir = (out / "pretrain").string();
  fmt::print("[2/4] pretraining a {:.2f} M parameter Llama for {} steps -> {}\n",
             static_cast<double>(pretrain.model.config->num_parameters()) / 1e6, options.pretrain_steps,
             pretrain.output_dir);
  const recipes::TrainResult pretrained = train_with_progress(pretrain);
  fmt::print("      done in {:.0f} s: loss {:.3f}, held-out loss {:.3f}\n", seconds_since(phase), pretrained.final_loss,
             pretrained.final_eval_loss);

  // 4. Fine-tuning from the pretrained checkpoint.
  phase = Clock::now();
  recipes::RunConfig finetune = base_run(options, train_file, heldout_file, dtype);
  finetune.model.path = pretrained.final_dir;
  finetune.optim.lr = 3e-4;
  finetune.schedule = {.name = "cosine", .warmup_steps = 0, .min_lr = 3e-5};
  finetune.train.steps = options.finetune_steps;
  finetune.output_dir = (out / "finetune_plain").string();
  fmt::print("[3/4] fine-tuning the pretrained model for {} steps -> {}\n", options.finetune_steps,
             finetune.output_dir);
  const recipes::TrainResult finetuned = train_with_progress(finetune);
  fmt::print("      done in {:.0f} s: loss {:.3f}, held-out loss {:.3f}\n", seconds_since(phase), finetuned.final_loss,
             finetuned.final_eval_loss);

  // 5. The same fine-tune with llama.cpp's Q4_0 arithmetic in the loop: the weights learn to live on the grid
  // llama.cpp will store them on, with the inputs rounded as its kernels round them.
  phase = Clock::now();
  recipes::RunConfig qat_run = finetune;
  qat_run.recipe = recipes::Recipe::qat;
  qat_run.quant.scheme = quant::GgmlQ4_0{};
  qat_run.output_dir = (out / "finetune_qat").string();
  fmt::print(
      "[4/4] QAT fine-tuning (ggml_q4_0: llama.cpp's Q4_0 weights, Q8_0 inputs) from the same checkpoint for {} "
      "steps -> {}\n",
      options.finetune_steps, qat_run.output_dir);
  const recipes::TrainResult qat_finetuned = train_with_progress(qat_run);
  fmt::print("      done in {:.0f} s: loss {:.3f}, held-out loss {:.3f} (fake-quantized)\n", seconds_since(phase),
             qat_finetuned.final_loss, qat_finetuned.final_eval_loss);

  // 6. Both fine-tunes as GGUF q4_0 files, and held-out word perplexity; the quantized rows compute as llama.cpp.
  const std::string ptq_gguf = export_q4_0(finetuned.final_dir, *tokenizer, out / "finetune_plain-q4_0.gguf");
  const std::string qat_gguf = export_q4_0(qat_finetuned.final_dir, *tokenizer, out / "finetune_qat-q4_0.gguf");
  std::vector<Row> rows;
  rows.push_back({"pretrained, float", heldout_word_perplexity(pretrained.final_dir, corpus.heldout)});
  rows.push_back({"fine-tuned, float", heldout_word_perplexity(finetuned.final_dir, corpus.heldout)});
  rows.push_back({"fine-tuned, PTQ q4_0", heldout_word_perplexity(finetuned.final_dir, corpus.heldout, ptq_gguf)});
  rows.push_back({"QAT fine-tuned, q4_0", heldout_word_perplexity(qat_finetuned.final_dir, corpus.heldout, qat_gguf)});
  const double float_ppl = rows[1].word_perplexity, ptq_ppl = rows[2].word_perplexity,
               qat_ppl = rows[3].word_perplexity;
  // The share of PTQ's degradation that QAT recovered (negative: QAT did worse than PTQ).
  const double recovered = (ptq_ppl - qat_ppl) / (ptq_ppl - float_ppl);
  const std::string table =
      format_table(rows, float_ppl) +
      fmt::format("\nQAT recovered {:.1f}% of the word-perplexity degradation of PTQ ({:+.2f} -> {:+.2f}).\n",
                  100.0 * recovered, ptq_ppl - float_ppl, qat_ppl - float_ppl);

  nlohmann::json results = {{"heldout_fortunes", corpus.heldout.size()},
                            {"train_fortunes", corpus.train.size()},
                            {"qat_recovered_fraction", recovered},
                            {"seconds", seconds_since(start)}};
  for (const auto& row : rows) {
    results["rows"].push_back({{"model", row.name}, {"word_perplexity", row.word_perplexity}});
  }
  io::write_file_atomic((out / "results.json").string(), results.dump(2) + "\n");
  io::write_file_atomic((out / "results.md").string(), table);
  fmt::print(
      "\n{}\nThe QAT model for llama.cpp, exactly the weights it trained with: {} ({:.1f} MiB)\n"
      "  llama-completion -m {} -p \"The\" --temp 0\n"
      "\nTotal {:.0f} s. Everything is under {}/ (results.md, results.json, metrics in */metrics.jsonl;\n"
      "try `qtune generate --model {} --prompt \"The\"`).\n",
      table, qat_gguf, static_cast<double>(fs::file_size(qat_gguf)) / (1 << 20), qat_gguf, seconds_since(start),
      out.string(), qat_gguf);
  return 0;
}

}  // namespace qtune::cli
