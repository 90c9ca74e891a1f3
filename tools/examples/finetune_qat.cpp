// finetune_qat: quantization-aware fine-tuning of a Hugging Face Llama directory with a hand-written loop.
// The linears train through 8da4w fake quantization (int8 per-token activations, int4 weights in groups
// of 32), the float result is saved, and the model is then converted to the real int8 x int4 kernels.
// Prints the held-out loss of post-training quantization (PTQ) before and of the converted model after,
// so the effect of QAT is measured, not assumed. Uses only the public qtune API; `qtune run qat` is the
// same loop with checkpoints, metrics and resume.
//
//   finetune_qat MODEL_DIR TEXT_FILE OUT_DIR [STEPS]
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include <qtune/qtune.h>

namespace data = qtune::data;
namespace models = qtune::models;
namespace optim = qtune::optim;
namespace quant = qtune::quant;

namespace {

constexpr int64_t kSeqLen = 64, kBatch = 8;

const quant::QATConfig kPrepare{quant::Int8DynActInt4Weight{.group_size = 32}, quant::QATStep::Prepare};
const quant::QATConfig kConvert{quant::Int8DynActInt4Weight{.group_size = 32}, quant::QATStep::Convert};

// The model as it will be deployed: its linears converted to real 8da4w modules.
double quantized_heldout_loss(const std::string& model_dir, const std::vector<int32_t>& heldout) {
  const auto model = models::load_llama(model_dir);
  quant::quantize_(*model, kPrepare);
  quant::quantize_(*model, kConvert);
  return models::mean_stream_loss(*model, heldout, kSeqLen, kBatch);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: finetune_qat MODEL_DIR TEXT_FILE OUT_DIR [STEPS]\n");
    return 2;
  }
  const std::string model_dir = argv[1], text_file = argv[2], out_dir = argv[3];
  const int64_t steps = argc == 5 ? std::stoll(argv[4]) : 100;
  try {
    const auto tokenizer = data::load_tokenizer(model_dir);
    // The last tenth of the text is held out: QAT must not be judged on what it trained on.
    std::vector<int32_t> tokens = data::tokenize_text_file(text_file, *tokenizer);
    const auto split = static_cast<std::ptrdiff_t>(tokens.size() * 9 / 10);
    const std::vector<int32_t> heldout(tokens.begin() + split, tokens.end());
    tokens.resize(static_cast<size_t>(split));
    if (heldout.size() < size_t(kSeqLen + 1) * kBatch) {
      std::fprintf(stderr, "finetune_qat: %s is too short: the held-out tenth needs %lld tokens\n", text_file.c_str(),
                   static_cast<long long>((kSeqLen + 1) * kBatch));
      return 1;
    }
    const double ptq_before = quantized_heldout_loss(model_dir, heldout);

    const auto model = models::load_llama(model_dir);
    const double float_before = models::mean_stream_loss(*model, heldout, kSeqLen, kBatch);
    const int64_t prepared = quant::quantize_(*model, kPrepare);
    std::printf("QAT: %lld linears fake-quantized (8da4w, group 32); held-out loss before: %.4f float, %.4f PTQ\n",
                static_cast<long long>(prepared), float_before, ptq_before);

    auto loader = data::DataLoader::from_tokens(tokens, kSeqLen, kBatch, /*seed=*/0);
    const double lr = 5e-4;
    optim::AdamW optimizer(model->trainable_parameters(), {.lr = lr, .weight_decay = 0.0});
    const optim::LrSchedule schedule(lr, {.name = "cosine", .warmup_steps = steps / 10, .total_steps = steps});
    for (int64_t step = 0; step < steps; ++step) {
      quant::set_qat_step(*model, step);  // fake_quant_after_n_steps counts optimizer steps
      const data::Batch batch = loader.next();
      const qtune::Tensor loss = model->loss(batch.tokens, batch.targets);  // tokens, targets: [8, 64]
      loss.backward();
      optim::clip_grad_norm(optimizer.params(), 1.0);
      optimizer.set_lr(schedule.lr_at(step));
      optimizer.step();
      optimizer.zero_grad();
      if (step % 20 == 0 || step + 1 == steps) {
        std::printf("step %4lld  loss %.4f (fake-quantized)\n", static_cast<long long>(step + 1), loss.item());
      }
    }

    // The fake-quant modules keep the float weights under their HF names: this is a normal checkpoint.
    models::save_llama(*model, out_dir);
    for (const char* name : {"tokenizer.model", "tokenizer.json"}) {
      const auto from = std::filesystem::path(model_dir) / name;
      if (std::filesystem::exists(from)) {
        std::filesystem::copy_file(from, std::filesystem::path(out_dir) / name,
                                   std::filesystem::copy_options::overwrite_existing);
      }
    }
    const double qat_after = quantized_heldout_loss(out_dir, heldout);
    std::printf("held-out loss of the 8da4w model: %.4f after QAT (PTQ before: %.4f)\nsaved %s\n", qat_after,
                ptq_before, out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune_qat: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
