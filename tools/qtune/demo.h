#pragma once
// `qtune demo`, the README's first command: the main job on the embedded default, on CPU, in minutes.
//   1. the fortunes corpus, split into training and held-out fortunes;
//   2. a SentencePiece tokenizer trained on the training part;
//   3. a small Llama pretrained from scratch (the `full` recipe);
//   4. two fine-tunes from the same pretrained checkpoint: plain, and with QAT (8da4w, group 32: the
//      recipe's prepare hook swaps in fake-quantized linears);
//   5. word perplexity of each on the held-out fortunes, as a table: float, PTQ (the plain fine-tune
//      converted to real 8da4w modules), QAT (the QAT fine-tune converted), and the share of the PTQ
//      degradation that QAT recovered.
// Every artifact stays under one output directory.
#include <cstdint>
#include <string>

namespace qtune::cli {

struct DemoOptions {
  std::string corpus_dir = "/usr/share/games/fortunes";
  std::string out_dir = "qtune-demo";
  uint64_t seed = 1;
  int64_t vocab_size = 4096;
  int64_t pretrain_steps = 1200;  // of 16 x 128 tokens: about 3 epochs of the corpus
  int64_t finetune_steps = 300;
  double heldout_fraction = 0.05;
};

int run_demo(const DemoOptions& options);

}  // namespace qtune::cli
