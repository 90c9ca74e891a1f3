// `qtune demo`: the README's first command, the main job on the embedded default.
#include "qtune/commands.h"
#include "qtune/demo.h"

namespace qtune::cli {

void add_demo_command(CLI::App& app, int& status) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Train a tokenizer and a small Llama on the fortunes corpus, fine-tune it, and compare held-out word "
      "perplexity (CPU, under 10 minutes)");
  cmd->add_option("--corpus", options->corpus_dir, "directory of fortune files")->capture_default_str();
  cmd->add_option("--out", options->out_dir, "output directory (every artifact goes here)")->capture_default_str();
  cmd->add_option("--seed", options->seed, "random seed")->capture_default_str();
  cmd->add_option("--dtype", options->dtype,
                  "training dtype: bf16 (f32 master weights), f32, or auto (bf16 where the CPU has bf16 instructions)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--vocab-size", options->vocab_size, "SentencePiece vocabulary size")
      ->capture_default_str()
      ->check(CLI::Range(300, 32000));
  cmd->add_option("--pretrain-steps", options->pretrain_steps, "pretraining steps")
      ->capture_default_str()
      ->check(integer_in(1, kMaxCount));
  cmd->add_option("--finetune-steps", options->finetune_steps, "steps of each fine-tune")
      ->capture_default_str()
      ->check(integer_in(1, kMaxCount));
  cmd->callback([options, &status] { status = run_demo(*options); });
}

}  // namespace qtune::cli
