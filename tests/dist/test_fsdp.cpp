// FSDP under `mpirun -np N` (CTest runs N = 1, 2, 3 and 4): rank r trains on micro-batch r of a step, and every
// rank also runs, unsharded, what one process accumulating the N micro-batches computes. The two must agree bit
// for bit: gradient pieces, the per-tensor squared norms, the clipped AdamW update, the optimizer state and the
// weights after two steps. Covered: f32 and bf16, activation checkpointing, tied embeddings, eval forwards,
// and a QLoRA model (NF4 base cut on whole double-quantization groups, LoRA adapters trained). Consolidated
// saving writes the one-process files from rank 0 with one whole tensor in memory at a time. A sharded load gives
// each rank the pieces one process's load would have, NF4 codes included, holding one projection at most beside
// its shard.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dist/mpi_communicator.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/io/safetensors.h"
#include "engine/module.h"
#include "engine/numerics/clip.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "models/lora.h"
#include "models/quantizing_loader.h"
#include "models/sharded_llama.h"
#include "models/sharded_loading.h"
#include "ops/elementwise.h"
#include "optim/adamw.h"
#include "quant/frozen_nf4_linear.h"

using namespace qtune;

namespace {

dist::MpiCommunicator* world = nullptr;

models::LlamaConfig tiny_config(bool tied) {
  models::LlamaConfig c;
  // Embedding 200 x 96 and the MLP's 96 x 176 span two squared-norm blocks (16384 elements): a gradient's
  // blocks come from different ranks.
  c.vocab_size = 200;
  c.hidden_size = 96;
  c.intermediate_size = 176;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = tied;
  return c;
}

struct Setup {
  DType dtype = DType::f32;
  bool tied = false;
  bool checkpointing = false;
  bool qlora = false;
};

std::unique_ptr<models::Llama> build(const Setup& s) {
  models::LlamaOptions o;
  o.dtype = s.dtype;
  o.seed = 7;
  o.activation_checkpointing = s.checkpointing;
  auto model = std::make_unique<models::Llama>(tiny_config(s.tied), o);
  if (s.qlora) {
    quant::convert_to_nf4(
        *model, [](const Module&, std::string_view fqn) { return fqn.find("layers.") != std::string_view::npos; });
    models::LoraConfig lora;
    lora.rank = 4;
    lora.targets = {"q_proj", "v_proj", "down_proj"};
    lora.seed = 3;
    models::apply_lora(*model, lora);
  }
  return model;
}

// Micro-batch m of the step: [2, 12] tokens and their targets (a few ignored).
std::pair<Tensor, Tensor> micro_batch(int64_t step, int64_t m) {
  std::mt19937_64 g(1000 + static_cast<uint64_t>(step * 16 + m));
  std::vector<int64_t> tokens(24), targets(24);
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int64_t>(g() % 200);
    targets[i] = i % 7 == 3 ? -100 : static_cast<int64_t>(g() % 200);
  }
  return {Tensor::from_data(tokens.data(), {2, 12}, DType::i64),
          Tensor::from_data(targets.data(), {2, 12}, DType::i64)};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

void clip(const std::vector<Tensor>& params, const Tensor& squares, double max_norm) {
  for (const Tensor& p : params)
    if (p.grad().defined()) backend_for(p.device()).clip_by_norm(squares, max_norm, p.grad());
}

void check_equivalence(const Setup& s) {
  const int ranks = world->size(), rank = world->rank();
  // The one-process run: N micro-batches per step, each loss scaled by 1/N, gradients accumulated.
  auto reference = build(s);
  const std::vector<Tensor> ref_params = reference->trainable_parameters();
  optim::AdamWOptions adam;
  adam.lr = 3e-3;
  adam.weight_decay = 0.1;
  optim::AdamW ref_opt(ref_params, adam);

  auto model = build(s);
  models::ShardedLlama sharded(*model, *world);
  dist::Fsdp& fsdp = sharded.fsdp();
  REQUIRE(fsdp.parameters().size() == ref_params.size());
  optim::AdamW opt(fsdp.parameters(), adam);

  for (int64_t step = 0; step < 2; ++step) {
    std::vector<double> ref_losses;
    for (int m = 0; m < ranks; ++m) {
      const auto [tokens, targets] = micro_batch(step, m);
      const Tensor loss = reference->loss(tokens, targets);
      ref_losses.push_back(loss.item());
      (ranks == 1 ? loss : loss * (1.0 / ranks)).backward();
    }
    const Tensor ref_squares = Tensor::empty({static_cast<int64_t>(ref_params.size())}, DType::f64);
    for (size_t j = 0; j < ref_params.size(); ++j)
      backend_for(Device::cpu()).squared_norm(ref_params[j].grad().contiguous(), ref_squares.narrow(0, int64_t(j), 1));

    const auto [tokens, targets] = micro_batch(step, rank);
    const Tensor loss = model->loss(tokens, targets);
    CHECK(loss.item() == ref_losses[static_cast<size_t>(rank)]);
    (ranks == 1 ? loss : loss * (1.0 / ranks)).backward();
    fsdp.finish_backward();
    const Tensor squares = fsdp.grad_norm_squares();
    CHECK(same_bits(squares, ref_squares));

    // Each piece is this rank's slice of the whole gradient, zero-padded.
    const std::vector<Tensor> ref_grads = [&] {
      std::vector<Tensor> g;
      for (const Tensor& p : ref_params) g.push_back(p.grad());
      return g;
    }();
    const std::vector<Tensor> expected = fsdp.shard_whole(ref_grads);
    for (size_t j = 0; j < ref_params.size(); ++j) {
      INFO(fsdp.parameter_names()[j]);
      CHECK(same_bits(fsdp.parameters()[j].grad(), expected[j]));
    }

    const double max_norm = 0.5 * numerics::norm_from_squares(ref_squares.data<double>(), ref_squares.numel());
    clip(ref_params, ref_squares, max_norm);
    clip(fsdp.parameters(), squares, max_norm);
    ref_opt.step();
    ref_opt.zero_grad();
    opt.step();
    opt.zero_grad();
    fsdp.after_step();
  }

  // The optimizer state, gathered into whole tensors, is the one-process state.
  const optim::OptimizerState ref_state = ref_opt.state(), state = opt.state();
  for (const std::string name : {"exp_avg", "exp_avg_sq"}) {
    std::vector<Tensor> pieces;
    for (size_t j = 0; j < ref_params.size(); ++j)
      pieces.push_back(state.tensors.at("state." + std::to_string(j) + "." + name));
    const std::vector<Tensor> whole = fsdp.gather_pieces(pieces);
    for (size_t j = 0; j < ref_params.size(); ++j) {
      INFO(fsdp.parameter_names()[j], " ", name);
      CHECK(same_bits(whole[j], ref_state.tensors.at("state." + std::to_string(j) + "." + name)));
    }
  }

  // An eval forward (gathering and releasing each layer) gives the one-process logits.
  {
    NoGradGuard no_grad;
    const auto [tokens, targets] = micro_batch(5, 0);
    CHECK(same_bits(model->forward(tokens), reference->forward(tokens)));
  }

  // Gathered, every tensor of the model (buffers too) equals the reference's.
  fsdp.gather_all();
  auto ref_state_dict = reference->named_parameters();
  auto state_dict = model->named_parameters();
  REQUIRE(ref_state_dict.size() == state_dict.size());
  for (size_t i = 0; i < state_dict.size(); ++i) {
    INFO(state_dict[i].first);
    CHECK(state_dict[i].first == ref_state_dict[i].first);
    CHECK(same_bits(state_dict[i].second, ref_state_dict[i].second));
  }
  auto ref_buffers = reference->named_buffers();
  auto buffers = model->named_buffers();
  REQUIRE(ref_buffers.size() == buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    INFO(buffers[i].first);
    CHECK(same_bits(buffers[i].second, ref_buffers[i].second));
  }
  fsdp.release_all();
}

}  // namespace

TEST_CASE("f32: N ranks equal one process accumulating N micro-batches") { check_equivalence({}); }

TEST_CASE("bf16 with tied embeddings") { check_equivalence({DType::bf16, true, false, false}); }

TEST_CASE("activation checkpointing gathers each layer again for its recomputation") {
  check_equivalence({DType::f32, false, true, false});
}

TEST_CASE("QLoRA: NF4 base gathered, never reduced; LoRA adapters sharded") {
  check_equivalence({DType::f32, false, false, true});
}

TEST_CASE("mixed precision: bf16 compute, f32 masters and reductions") {
  // The one-process equivalent: each micro-batch's bf16 gradients widened to f32 and summed in order, then the
  // norm, clipping and AdamW on f32 masters; the model computes in the masters rounded to bf16.
  const int ranks = world->size();
  const Setup s{DType::bf16, false, false, false};
  auto reference = build(s);
  const std::vector<Tensor> ref_params = reference->trainable_parameters();
  std::vector<Tensor> masters, sums(ref_params.size());
  for (const Tensor& p : ref_params) {
    masters.push_back(p.detach().to(DType::f32));
    masters.back().requires_grad_(true);
  }
  for (int m = 0; m < ranks; ++m) {
    for (const Tensor& p : ref_params) p.zero_grad();
    const auto [tokens, targets] = micro_batch(0, m);
    (reference->loss(tokens, targets) * (1.0 / ranks)).backward();
    for (size_t j = 0; j < ref_params.size(); ++j) {
      const Tensor g = ref_params[j].grad().to(DType::f32);
      sums[j] = m == 0 ? g : ops::add(sums[j], g);
    }
  }
  const Tensor ref_squares = Tensor::empty({static_cast<int64_t>(masters.size())}, DType::f64);
  for (size_t j = 0; j < masters.size(); ++j) {
    masters[j].set_grad(sums[j]);
    backend_for(Device::cpu()).squared_norm(sums[j], ref_squares.narrow(0, int64_t(j), 1));
  }
  const double max_norm = 0.5 * numerics::norm_from_squares(ref_squares.data<double>(), ref_squares.numel());
  clip(masters, ref_squares, max_norm);
  optim::AdamWOptions adam;
  adam.lr = 1e-2;
  optim::AdamW(masters, adam).step();

  auto model = build(s);
  models::ShardedLlama sharded(*model, *world, {.master_dtype = DType::f32});
  dist::Fsdp& fsdp = sharded.fsdp();
  CHECK(fsdp.parameters().front().dtype() == DType::f32);
  const auto [tokens, targets] = micro_batch(0, world->rank());
  (model->loss(tokens, targets) * (1.0 / ranks)).backward();
  fsdp.finish_backward();
  const Tensor squares = fsdp.grad_norm_squares();
  CHECK(same_bits(squares, ref_squares));
  clip(fsdp.parameters(), squares, max_norm);
  optim::AdamW(fsdp.parameters(), adam).step();
  fsdp.after_step();

  const std::vector<Tensor> got = fsdp.gather_pieces(fsdp.parameters());
  fsdp.gather_all();
  const std::vector<Tensor> weights = model->parameters();  // bf16, all of them trained
  REQUIRE(got.size() == masters.size());
  REQUIRE(weights.size() == masters.size());
  for (size_t j = 0; j < masters.size(); ++j) {
    INFO(fsdp.parameter_names()[j]);
    CHECK(same_bits(got[j], masters[j].detach()));
    CHECK(weights[j].dtype() == DType::bf16);
    CHECK(same_bits(weights[j], masters[j].detach().to(DType::bf16)));
  }
  fsdp.release_all();
}

TEST_CASE("between uses a rank holds its shard only; materialize makes the model whole again") {
  auto model = build({});
  models::ShardedLlama sharded(*model, *world);
  for (auto& [name, t] : model->named_parameters())
    if (name.rfind("model.layers.", 0) == 0) {
      INFO(name);
      CHECK(!t.storage()->has_data());
    }
  // Optimizer state keys are checked before anything is sharded.
  optim::OptimizerState bad;
  bad.tensors["exp_avg.0"] = Tensor::zeros({1});
  CHECK_THROWS_WITH_AS(sharded.shard_state(bad), doctest::Contains("exp_avg.0: expected state.<parameter>.<name>"),
                       Error);
  bad.tensors.clear();
  bad.tensors["state.999.exp_avg"] = Tensor::zeros({1});
  CHECK_THROWS_WITH_AS(sharded.shard_state(bad), doctest::Contains("the model has 30 trainable tensors"), Error);
  sharded.fsdp().materialize();
  auto reference = build({});
  auto expected = reference->named_parameters();
  auto now = model->named_parameters();
  for (size_t i = 0; i < now.size(); ++i) {
    CHECK(now[i].second.requires_grad());
    CHECK(same_bits(now[i].second, expected[i].second));
  }
}

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_CASE("consolidated saving: rank 0 writes one process's files while each rank holds one whole tensor at a time") {
  auto model = build({});
  auto reference = build({});
  models::ShardedLlama sharded(*model, *world);
  // An optimizer state over the whole tensors (random values), cut into this rank's pieces.
  const std::vector<Tensor> ref_params = reference->trainable_parameters();
  optim::OptimizerState whole;
  std::mt19937 g(11);
  std::normal_distribution<float> normal;
  int64_t largest = 0, model_bytes = 0;
  for (size_t j = 0; j < ref_params.size(); ++j) {
    largest = std::max(largest, ref_params[j].numel());
    model_bytes += ref_params[j].nbytes();
    for (const char* name : {"exp_avg", "exp_avg_sq"}) {
      std::vector<float> values(static_cast<size_t>(ref_params[j].numel()));
      for (float& v : values) v = normal(g);
      whole.tensors["state." + std::to_string(j) + "." + name] =
          Tensor::from_data(values.data(), ref_params[j].shape(), DType::f32);
    }
  }
  const optim::OptimizerState pieces = sharded.shard_state(whole);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qtune_test_fsdp_consolidate_np" + std::to_string(world->size()));
  const auto save = [&](models::Llama& m, const std::string& name, const models::TensorReader& read,
                        const std::function<io::LazyTensor(const std::string&)>& state) {
    models::SaveOptions options;
    options.read = read;
    models::save_llama(m, (dir / name).string(), options);
    std::vector<io::LazyTensor> tensors;
    for (const auto& [key, t] : whole.tensors) tensors.push_back(state(key));
    io::save_safetensors((dir / name / "optimizer.safetensors").string(), tensors);
  };
  reset_peak_memory(Device::cpu());
  const int64_t before = static_cast<int64_t>(memory_stats(Device::cpu()).allocated);
  sharded.consolidate(pieces, [&](const models::ShardedLlama::WholeReader& read) {
    CHECK(world->rank() == 0);
    save(*model, "sharded", read.weight, read.optimizer_state);
  });
  // A gathered tensor is every rank's piece (whole norm blocks) laid end to end; the writer may hold a copy.
  const int64_t block = numerics::kSquaredNormBlock;
  const int64_t gathered =
      world->size() * ((largest + block - 1) / block + world->size() - 1) / world->size() * block * 4;
  const int64_t peak = static_cast<int64_t>(memory_stats(Device::cpu()).peak_allocated) - before;
  INFO("peak while saving: ", peak, " bytes; model ", model_bytes, ", optimizer ", 2 * model_bytes);
  REQUIRE(2 * gathered < model_bytes);  // below what gathering the model (and twice that of optimizer state) needs
  CHECK(peak <= 2 * gathered);
  for (auto& [name, t] : model->named_parameters())
    if (name.rfind("model.layers.", 0) == 0) CHECK(!t.storage()->has_data());

  if (world->rank() == 0) {
    save(*reference, "whole", nullptr, [&](const std::string& key) {
      const Tensor t = whole.tensors.at(key);
      return io::LazyTensor{{key, t.dtype(), t.shape()}, [t] { return t; }};
    });
    for (const char* file : {"model.safetensors", "config.json", "optimizer.safetensors"}) {
      INFO(file);
      CHECK(file_bytes(dir / "sharded" / file) == file_bytes(dir / "whole" / file));
    }
    std::filesystem::remove_all(dir);
  }

  // A failed write ends the save on every rank: rank 0 with its error, the others naming rank 0.
  const auto fail = [&] {
    sharded.consolidate(pieces, [&](const models::ShardedLlama::WholeReader& read) {
      read.optimizer_state("state.0.exp_avg").produce();
      QTUNE_FAIL("disk full");
    });
  };
  CHECK_THROWS_WITH_AS(
      fail(), doctest::Contains(world->rank() == 0 ? "disk full" : "rank 0 failed while writing the model"), Error);
}

TEST_CASE("consolidated saving of a frozen layer: rank 0 asks for the layer, which every rank gathers") {
  auto model = build({});
  auto reference = build({});
  for (models::Llama* m : {model.get(), reference.get()})
    for (auto& [name, t] : m->named_parameters())
      if (name.rfind("model.layers.1.", 0) == 0) t.requires_grad_(false);
  models::ShardedLlama sharded(*model, *world);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qtune_test_fsdp_frozen_np" + std::to_string(world->size()));
  sharded.consolidate({}, [&](const models::ShardedLlama::WholeReader& read) {
    models::SaveOptions options;
    options.read = read.weight;
    models::save_llama(*model, (dir / "sharded").string(), options);
  });
  if (world->rank() == 0) {
    models::save_llama(*reference, (dir / "whole").string());
    CHECK(file_bytes(dir / "sharded" / "model.safetensors") == file_bytes(dir / "whole" / "model.safetensors"));
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("sharded load: every rank reads only its pieces, which equal one process's load (NF4 codes too)") {
  models::LlamaConfig c = tiny_config(false);
  // NF4 weights of several double-quantization groups (16384 weights), the MLP's ending in a partial one:
  // ranks hold different groups, and the mean of the absmaxes spans all ranks.
  c.hidden_size = 256;
  c.intermediate_size = 392;
  c.num_hidden_layers = 2;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qtune_test_fsdp_load_np" + std::to_string(world->size()));
  if (world->rank() == 0) {
    models::LlamaOptions o;
    o.seed = 5;
    models::Llama model(c, o);
    models::SaveOptions save;
    save.dtype = DType::bf16;  // converted while read, as most checkpoints are
    models::save_llama(model, dir.string(), save);
  }
  world->barrier()->wait();

  const quant::ModelQuantization nf4{quant::NF4{}};
  for (const DType dtype : {DType::f32, DType::bf16}) {
    for (const bool quantized : {false, true}) {
      INFO(dtype_name(dtype), quantized ? " NF4" : " plain");
      models::LoadOptions load;
      load.dtype = dtype;
      const std::shared_ptr<models::Llama> reference =
          quantized ? models::load_llama_quantized(dir.string(), nf4, load) : models::load_llama(dir.string(), load);
      // The largest projection (the MLP's) in the compute dtype.
      const auto largest = static_cast<int64_t>(c.intermediate_size * c.hidden_size * dtype_size(dtype));

      reset_peak_memory(Device::cpu());
      const auto before = static_cast<int64_t>(memory_stats(Device::cpu()).allocated);
      const std::shared_ptr<models::Llama> model =
          models::load_llama_reserved(dir.string(), quantized ? &nf4 : nullptr, load);
      models::ShardedLlama sharded(*model, *world, {.source = models::checkpoint_pieces(dir.string(), *world, dtype)});
      const int64_t peak = static_cast<int64_t>(memory_stats(Device::cpu()).peak_allocated) - before;
      // The shard, the root's whole tensors, and one projection at most (converted from the file's bf16) with its
      // NF4 codes (half a byte per weight) and absmaxes.
      INFO("peak ", peak, " bytes, held ", sharded.fsdp().held_bytes(), ", largest projection ", largest);
      CHECK(peak <= sharded.fsdp().held_bytes() + largest + largest / 4);

      sharded.fsdp().gather_all();
      for (const bool buffers : {false, true}) {
        const auto got = buffers ? model->named_buffers() : model->named_parameters();
        const auto want = buffers ? reference->named_buffers() : reference->named_parameters();
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          INFO(want[i].first);
          CHECK(got[i].first == want[i].first);
          CHECK(same_bits(got[i].second, want[i].second));
        }
      }
      sharded.fsdp().release_all();
    }
  }

  // Pieces from a checkpoint whose MLP has another size: every rank refuses at the same tensor, naming it.
  const std::filesystem::path other = dir.string() + "_other";
  if (world->rank() == 0) {
    models::LlamaConfig narrow = c;
    narrow.intermediate_size = 384;
    models::Llama model(narrow, {});
    models::save_llama(model, other.string());
  }
  world->barrier()->wait();
  const std::shared_ptr<models::Llama> model = models::load_llama_reserved(dir.string(), nullptr);
  CHECK_THROWS_WITH_AS(
      models::ShardedLlama(*model, *world, {.source = models::checkpoint_pieces(other.string(), *world, DType::f32)}),
      doctest::Contains("model.layers.0.mlp.gate_proj.weight is [384, 256], the model expects [392, 256]"), Error);
  world->barrier()->wait();
  if (world->rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(other);
  }
}

int main(int argc, char** argv) {
  dist::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(120);
  options.check_calls = true;  // a rank calling another collective fails by name instead of hanging
  std::unique_ptr<dist::MpiCommunicator> comm = dist::MpiCommunicator::world(options);
  world = comm.get();
  doctest::Context context(argc, argv);
  int failed = context.run() != 0 ? 1 : 0;
  std::vector<int32_t> status = {failed};
  world->all_reduce(dist::Buffer{status.data(), 1, DType::i32}, dist::Reduce::max)->wait();
  if (world->rank() == 0)
    std::printf("%d rank(s): %s\n", world->size(), status[0] == 0 ? "all passed" : "FAILED on some rank");
  comm.reset();
  return status[0];
}
