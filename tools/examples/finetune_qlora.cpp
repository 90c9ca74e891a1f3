// finetune_qlora: QLoRA fine-tuning of a Hugging Face Llama directory with a hand-written loop and the public
// API only. The base streams into NF4 one layer at a time (the full-precision model never exists in
// memory), LoRA adapters wrap the attention projections, AdamW trains the adapters alone, and the adapter
// is saved in Hugging Face PEFT's layout, which `qtune generate --adapter` and peft load. Prints the
// held-out loss before and after, so the fine-tuning is measured. `qtune run qlora` is the same loop with
// checkpoints, metrics and resume.
//
// The same program runs under `mpirun -np N` / srun: the model is then sharded across the ranks (FSDP,
// docs/distributed.md), rank r trains on the r-th of every N batches, and rank 0 prints and saves. N ranks
// compute what one process accumulating those N batches computes. With DEVICE cuda the model trains on a GPU;
// under mpirun each rank takes its own GPU of the node and the shards move over NCCL.
//
//   finetune_qlora MODEL_DIR TEXT_FILE OUT_DIR [STEPS [DEVICE]]     DEVICE: cpu (default), cuda or cuda:N
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <qtune/qtune.h>

namespace data = qtune::data;
namespace dist = qtune::dist;
namespace models = qtune::models;
namespace optim = qtune::optim;

constexpr int64_t kSeqLen = 64, kBatch = 8;

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: finetune_qlora MODEL_DIR TEXT_FILE OUT_DIR [STEPS [DEVICE]]\n");
    return 2;
  }
  const std::string model_dir = argv[1], text_file = argv[2], out_dir = argv[3];
  const int64_t steps = argc >= 5 ? std::stoll(argv[4]) : 100;
  const std::string device_name = argc == 6 ? argv[5] : "cpu";
  try {
    const qtune::Device asked = qtune::parse_device(device_name);
    const auto world = dist::world_communicator();
    const int rank = world->rank(), ranks = world->size();
    // GPU ranks shard over NCCL, each on its node-local GPU; MPI (world) keeps the host-side exchanges.
    if (ranks > 1 && asked.is_cuda() && device_name != "cuda" && device_name != "cuda:0")
      throw std::runtime_error("device " + device_name + ": under mpirun each rank takes its own GPU; use cuda");
    const std::unique_ptr<dist::NcclCommunicator> nccl =
        ranks > 1 && asked.is_cuda() ? dist::NcclCommunicator::world(*world) : nullptr;
    const qtune::Device device = nccl ? nccl->device() : asked;
    const auto say = [rank](const char* format, auto... args) {
      if (rank == 0) std::printf(format, args...);
    };
    const auto tokenizer = data::load_tokenizer(model_dir);
    // The last tenth of the text is held out (a text too short for one batch of it is the loader's error).
    std::vector<int32_t> tokens = data::tokenize_text_file(text_file, *tokenizer);
    const auto split = static_cast<std::ptrdiff_t>(tokens.size() * 9 / 10);
    const std::vector<int32_t> heldout(tokens.begin() + split, tokens.end());
    tokens.resize(static_cast<size_t>(split));

    const models::LoraConfig lora{
        .rank = 8,
        .alpha = 16,
        .targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}};
    // Every decoder projection in NF4 with double quantization, read and quantized one layer at a time. Several
    // ranks read only their own pieces of the projections (each keeps 1/N of every layer, base and adapters,
    // and of the optimizer state): the model is built with them reserved and FSDP fills them.
    const qtune::quant::ModelQuantization base = models::qlora_base(lora);
    const auto model = ranks > 1 ? models::load_llama_reserved(model_dir, &base, {.device = device})
                                 : models::load_llama_quantized(model_dir, base, {.device = device});
    const int64_t wrapped = models::apply_lora(*model, lora);
    std::unique_ptr<models::ShardedLlama> sharded;
    if (ranks > 1) {
      sharded = std::make_unique<models::ShardedLlama>(
          *model, nccl ? static_cast<dist::Communicator&>(*nccl) : *world,
          qtune::dist::FsdpOptions{.source = models::checkpoint_pieces(model_dir, *world, model->options().dtype)});
      say("FSDP: %d ranks%s\n", ranks, nccl ? ", each on its own GPU (NCCL)" : "");
    }
    // The adapters start at zero (lora_B): this is the base model's loss.
    const double before = models::mean_stream_loss(*model, heldout, kSeqLen, kBatch);
    int64_t trainable = 0;
    for (const qtune::Tensor& a : models::lora_parameters(*model)) trainable += a.numel();
    say("device: %s\n", device.str().c_str());
    say("QLoRA: NF4 base, %lld projections with rank-%lld adapters (%lld trainable values); held-out loss before: "
        "%.4f\n",
        static_cast<long long>(wrapped), static_cast<long long>(lora.rank), static_cast<long long>(trainable), before);
    const std::vector<qtune::Tensor> params = sharded ? sharded->parameters() : models::lora_parameters(*model);

    auto loader = data::DataLoader::from_tokens(tokens, kSeqLen, kBatch, /*seed=*/0);
    const double lr = 1e-2;
    optim::AdamW optimizer(params, {.lr = lr, .weight_decay = 0.0});
    const optim::LrSchedule schedule(lr, {.name = "cosine", .warmup_steps = steps / 10, .total_steps = steps});
    // Single batches are noisy: the training loss is compared as the mean of the first and last tenth.
    const int64_t tenth = std::max<int64_t>(1, steps / 10);
    double first_tenth = 0, last_tenth = 0;
    for (int64_t step = 0; step < steps; ++step) {
      // A step takes N batches; rank r computes the r-th (tokens, targets: [8, 64]).
      double loss_value = 0;
      for (int r = 0; r < ranks; ++r) {
        const data::Batch batch = loader.next();
        if (r != rank) continue;
        const qtune::Tensor loss = model->loss(batch.tokens, batch.targets);
        loss_value = loss.item();
        (ranks == 1 ? loss : loss * (1.0 / ranks)).backward();
      }
      if (sharded) {
        sharded->finish_gradients(1.0);
        std::vector<double> losses(static_cast<size_t>(ranks));
        world->all_gather({&loss_value, 1, qtune::DType::f64}, {losses.data(), ranks, qtune::DType::f64})->wait();
        loss_value = 0;
        for (double l : losses) loss_value += l / ranks;
      } else {
        optim::clip_grad_norm(params, 1.0);
      }
      optimizer.set_lr(schedule.lr_at(step));
      optimizer.step();
      optimizer.zero_grad();
      if (sharded) sharded->fsdp().after_step();
      if (step < tenth) first_tenth += loss_value / double(tenth);
      if (step >= steps - tenth) last_tenth += loss_value / double(tenth);
      if (step % 20 == 0 || step + 1 == steps)
        say("step %4lld  loss %.4f\n", static_cast<long long>(step + 1), loss_value);
    }
    say("mean training loss: %.4f over the first %lld steps, %.4f over the last %lld\n", first_tenth,
        static_cast<long long>(tenth), last_tenth, static_cast<long long>(tenth));
    if (sharded) {
      // Rank 0 writes the adapter while every rank gathers one tensor at a time for it.
      sharded->consolidate({}, [&](const models::ShardedLlama::WholeReader& read) {
        models::save_adapter(*model, lora, out_dir, model_dir, read.weight);
      });
    } else {
      models::save_adapter(*model, lora, out_dir, model_dir);
    }
    say("held-out loss after QLoRA: %.4f (before: %.4f)\nsaved the adapter to %s\n",
        models::mean_stream_loss(*model, heldout, kSeqLen, kBatch), before, out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune_qlora: error: %s\n", e.what());  // collective errors name the rank
    return 1;
  }
  return 0;
}
