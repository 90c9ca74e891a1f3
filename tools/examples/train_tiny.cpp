// train_tiny: build a small Llama from a config, train it on a text file, save it as a Hugging Face
// model directory that `qtune generate`, `qtune eval` and transformers can load. Uses only the public
// qtune API, with a hand-written loop (the `qtune run` recipes wrap the same steps with checkpoints,
// evaluation and metrics).
//
//   train_tiny TEXT_FILE OUT_DIR [STEPS]
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include <qtune/qtune.h>

namespace data = qtune::data;
namespace models = qtune::models;
namespace optim = qtune::optim;

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: train_tiny TEXT_FILE OUT_DIR [STEPS]\n");
    return 2;
  }
  const std::string text_file = argv[1], out_dir = argv[2];
  const int64_t steps = argc == 4 ? std::stoll(argv[3]) : 200;
  try {
    std::filesystem::create_directories(out_dir);

    // A tokenizer fitted to this text, saved where a model directory keeps it.
    const std::string tokenizer_file = out_dir + "/tokenizer.model";
    data::train_sentencepiece(text_file, tokenizer_file, {.vocab_size = 1024});
    const auto tokenizer = data::load_sentencepiece(tokenizer_file);

    models::LlamaConfig config;
    config.vocab_size = tokenizer->vocab_size();
    config.hidden_size = 128;
    config.intermediate_size = 384;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 256;
    config.tie_word_embeddings = true;
    models::Llama model(config, {.seed = 0});

    // The whole file as one token stream, cut into shuffled windows of 64 tokens.
    auto loader = data::DataLoader::from_tokens(data::tokenize_text_file(text_file, *tokenizer),
                                                /*seq_len=*/64, /*batch_size=*/8, /*seed=*/0);

    const double lr = 2e-3;
    optim::AdamW optimizer(model.trainable_parameters(), {.lr = lr, .weight_decay = 0.1});
    const optim::LrSchedule schedule(
        lr, {.name = "cosine", .warmup_steps = steps / 10, .total_steps = steps, .min_lr = lr / 10});

    for (int64_t step = 0; step < steps; ++step) {
      const data::Batch batch = loader.next();
      const qtune::Tensor loss = model.loss(batch.tokens, batch.targets);  // tokens, targets: [8, 64]
      loss.backward();
      const double grad_norm = optim::clip_grad_norm(optimizer.params(), 1.0);
      optimizer.set_lr(schedule.lr_at(step));
      optimizer.step();
      optimizer.zero_grad();
      if (step % 20 == 0 || step + 1 == steps) {
        std::printf("step %4lld  loss %.4f  grad_norm %.3f  lr %.2e\n", static_cast<long long>(step + 1), loss.item(),
                    grad_norm, optimizer.lr());
      }
    }

    models::save_llama(model, out_dir);
    std::printf("saved %s\n", out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_tiny: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
