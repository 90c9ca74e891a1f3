#pragma once
// `qtune demo`, the README's first command: the main job on the embedded default, on CPU, in minutes.
//   1. the fortunes corpus, split into training and held-out fortunes;
//   2. a SentencePiece tokenizer trained on the training part;
//   3. a small Llama pretrained from scratch (the `full` recipe);
//   4. two fine-tunes from the same pretrained checkpoint: plain, and with QAT for llama.cpp's Q4_0
//      (ggml_q4_0: Q4_0 weights and Q8_0-block inputs, fake-quantized in the loop);
//   5. both fine-tunes written as GGUF q4_0 files, and word perplexity on the held-out fortunes, as a table:
//      float, PTQ (the plain fine-tune's q4_0 file) and QAT (the QAT fine-tune's, exactly its trained weights),
//      the quantized ones computed as llama.cpp's CPU backend does, and the share of the PTQ degradation that
//      QAT recovered.
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
  // Training dtype: bf16 (with f32 master weights: model.master_dtype=f32), f32, or auto: bf16 where the CPU
  // multiplies bf16 natively (Backend::gemm_native), f32 elsewhere.
  std::string dtype = "auto";
};

int run_demo(const DemoOptions& options);

}  // namespace qtune::cli
