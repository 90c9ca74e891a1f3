// Every recipe trains with device=cuda and gives the CPU run's losses: the five recipes in f32 within
// 1e-5 relative per step, the three float8 recipes within 1e-4, bf16 within 2e-2; then eval and generation
// of the trained model on the GPU. Without a GPU the executable exits 77, which CTest reports as
// SKIPPED; in CI it runs under the CUDA simulator.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "engine/allocator.h"
#include "engine/backend.h"
#include "engine/device.h"
#include "gpu_test_main.h"
#include "models/evaluate.h"
#include "models/generate.h"
#include "models/hf_checkpoint.h"
#include "models/quantized_checkpoint.h"
#include "models/quantizing_loader.h"
#include "recipe_fixtures.h"
#include "scratch_files.h"
#include "tools/recipes/model_passes.h"
#include "tools/recipes/trainer.h"
#if defined(QTUNE_CUDA_SIM)
#include "cuda/sim/observe.h"
#endif

using namespace qtune;
using namespace qtune::recipes;
using testing::tiny_run;

namespace {

constexpr int kSteps = 3;

// The per-step losses of a run of `overrides` on `device`.
std::vector<double> losses_on(const testing::ScratchDir& dir, const std::string& name, const std::string& device,
                              std::vector<std::string> overrides) {
  overrides.insert(overrides.end(), {"device=" + device, "train.steps=" + std::to_string(kSteps)});
  const RunConfig config = tiny_run(dir.str(name + "_" + device), overrides);
  std::vector<double> losses;
  TrainHooks hooks;
  add_model_passes(config, hooks);
  hooks.on_step = [&](const StepMetrics& m) { losses.push_back(m.loss); };
  train(config, hooks);
  return losses;
}

void check_same_losses(const testing::ScratchDir& dir, const std::string& name,
                       const std::vector<std::string>& overrides, double rtol) {
  CAPTURE(name);
  const std::vector<double> cpu = losses_on(dir, name, "cpu", overrides);
  const std::vector<double> gpu = losses_on(dir, name, "cuda", overrides);
  REQUIRE(cpu.size() == static_cast<size_t>(kSteps));
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    CAPTURE(i);
    CHECK(std::isfinite(gpu[i]));
    CHECK_MESSAGE(std::fabs(gpu[i] - cpu[i]) <= rtol * std::fabs(cpu[i]), "step ", i + 1, ": cuda ", gpu[i], " cpu ",
                  cpu[i]);
  }
}

// A float HF directory to fine-tune (trained on the CPU).
std::string trained_base(const testing::ScratchDir& dir) {
  return train(tiny_run(dir.str("base"), {"train.steps=2"})).final_dir;
}

std::vector<std::string> fine_tune(const std::string& recipe, const std::string& base,
                                   std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"recipe=" + recipe, "model.config=null", "model.path=" + base, "schedule.name=constant",
                                "optim.lr=1e-2"};
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

}  // namespace

TEST_CASE("f32: the five recipes and the three float8 recipes train on cuda with the CPU's losses") {
  testing::ScratchDir dir("cuda_recipes_f32");
  const std::string base = trained_base(dir);
  check_same_losses(dir, "full", {}, 1e-5);
  // The GEMMs sum in another order, so an f32 value next to a rounding boundary of a fake-quantized int4
  // code or of an fp8 code may take the neighbouring code: one step on a few elements moves the loss by
  // ~1e-5 (3.2e-5 seen for qat on an H200; the simulator sums as the CPU does).
  check_same_losses(dir, "qat", {"recipe=qat", "quant.fake_quant_after_n_steps=1"}, 1e-4);
  for (const char* fp8 : {"tensorwise", "rowwise", "rowwise_with_gw_hp"})
    check_same_losses(dir, std::string("fp8_") + fp8, {std::string("fp8.recipe=") + fp8}, 1e-4);
  check_same_losses(dir, "lora", fine_tune("lora", base), 1e-5);
  check_same_losses(dir, "qlora", fine_tune("qlora", base), 1e-5);
  check_same_losses(dir, "qat_lora", fine_tune("qat_lora", base, {"quant.fake_quant_after_n_steps=1"}), 1e-4);
}

TEST_CASE("bf16: full, lora and qlora train on cuda within bf16's rounding of the CPU's losses") {
  testing::ScratchDir dir("cuda_recipes_bf16");
  const std::string base = trained_base(dir);
  check_same_losses(dir, "full", {"model.dtype=bf16"}, 2e-2);
  check_same_losses(dir, "lora", fine_tune("lora", base, {"model.dtype=bf16"}), 2e-2);
  check_same_losses(dir, "qlora", fine_tune("qlora", base, {"model.dtype=bf16"}), 2e-2);
}

TEST_CASE("model.tf32: f32 GEMMs on TF32 inputs train within TF32's rounding of the CPU's losses, for that run only") {
  testing::ScratchDir dir("cuda_recipes_tf32");
  const std::vector<double> cpu = losses_on(dir, "f32", "cpu", {});
  const std::vector<double> tf32 = losses_on(dir, "tf32", "cuda", {"model.tf32=true"});
  CHECK_FALSE(backend_for(Device::cuda(0)).tf32());  // the next run on the device computes in f32 again
  const std::vector<double> f32 = losses_on(dir, "f32", "cuda", {});
  REQUIRE(tf32.size() == cpu.size());
  REQUIRE(f32.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(tf32[i] - cpu[i]) <= 1e-3 * std::fabs(cpu[i]));
  }
  // The same GEMMs without TF32 give other losses: the key reached them. (The loss averages the logits'
  // TF32 errors away, so its difference from the CPU's is small, about 1e-6 relative on this model.)
  CHECK(tf32 != f32);
}

TEST_CASE("a trained model evaluates and generates on cuda as on the CPU") {
  testing::ScratchDir dir("cuda_recipes_eval");
  const std::string base = trained_base(dir);
  const auto tokenizer = data::load_tokenizer(base);
  models::LoadOptions on_gpu;
  on_gpu.device = Device::cuda(0);
  const auto cpu_model = models::load_model(base, {});
  const auto gpu_model = models::load_model(base, on_gpu);
  const std::vector<std::string> docs = {"First Citizen: Before we proceed any further, hear me speak."};
  const auto pc = models::evaluate_perplexity(*cpu_model, *tokenizer, docs, 32);
  const auto pg = models::evaluate_perplexity(*gpu_model, *tokenizer, docs, 32);
  REQUIRE(pc.tokens > 0);
  CHECK(pg.tokens == pc.tokens);
  CHECK(pg.log_likelihood == doctest::Approx(pc.log_likelihood).epsilon(1e-5));
  models::SamplingOptions greedy;
  greedy.max_new_tokens = 8;
  greedy.temperature = 0;
  const std::vector<int32_t> prompt = tokenizer->encode("First Citizen:", true);
  CHECK(models::generate(*gpu_model, prompt, greedy) == models::generate(*cpu_model, prompt, greedy));
}

TEST_CASE("a QLoRA base streams onto the GPU one projection at a time, as NF4") {
  testing::ScratchDir dir("cuda_recipes_stream");
  const std::string base = trained_base(dir);
  const quant::ModelQuantization nf4{quant::NF4{}};
  models::LoadOptions on_gpu;
  on_gpu.device = Device::cuda(0);
  backend_for(on_gpu.device).synchronize();
  reset_peak_memory(on_gpu.device);
  const uint64_t before = memory_stats(on_gpu.device).allocated;
  const auto gpu_model = models::load_llama_quantized(base, nf4, on_gpu);
  const uint64_t peak = memory_stats(on_gpu.device).peak_allocated - before;
  const uint64_t kept = memory_stats(on_gpu.device).allocated - before;
  const auto cpu_model = models::load_llama_quantized(base, nf4, {});
  // Above what the loaded model keeps, the device held at most one projection in full precision (and the
  // quantizer's scratch) -- never the dense projections together, as loading then quantizing would.
  uint64_t projections = 0;
  for (const auto& [name, t] : models::load_llama(base)->state_dict())
    if (name.find("_proj.") != std::string::npos) projections += t.nbytes();
  CHECK_MESSAGE(peak - kept < projections / 2, "transient ", peak - kept, " bytes on the GPU for ", projections,
                " bytes of dense projections");
  const StateDict on_cpu = cpu_model->state_dict();
  for (const auto& [name, t] : gpu_model->state_dict()) {
    CAPTURE(name);
    CHECK(t.device() == on_gpu.device);
    // The NF4 kernels give the CPU's codes, scalers and factors to the bit.
    const Tensor g = t.to(Device::cpu()).contiguous(), c = on_cpu.at(name).contiguous();
    REQUIRE(g.nbytes() == c.nbytes());
    CHECK(std::memcmp(g.data_ptr(), c.data_ptr(), g.nbytes()) == 0);
  }
}

#if defined(QTUNE_CUDA_SIM)
// Only the simulator counts the host's waits; on a GPU this is what a profiler's timeline shows.
TEST_CASE("a training step queues its work without waiting for the GPU: one wait per logging interval") {
  testing::ScratchDir dir("cuda_recipes_waits");
  const std::string base = trained_base(dir);
  const struct {
    const char* name;
    std::vector<std::string> overrides;
  } runs[] = {{"full", {}},
              {"qat", {"recipe=qat", "quant.fake_quant_after_n_steps=0"}},
              {"fp8_rowwise", {"fp8.recipe=rowwise"}},
              {"fp8_tensorwise", {"fp8.recipe=tensorwise"}},
              {"lora", fine_tune("lora", base)},
              {"qlora", fine_tune("qlora", base)},
              {"qat_lora", fine_tune("qat_lora", base, {"quant.fake_quant_after_n_steps=0"})}};
  for (const auto& run : runs) {
    CAPTURE(std::string(run.name));
    std::vector<std::string> overrides = run.overrides;
    overrides.insert(overrides.end(), {"device=cuda", "train.steps=8", "train.log_every=4", "optim.grad_clip=0.5"});
    const RunConfig config = tiny_run(dir.str(std::string("waits_") + run.name), overrides);
    std::vector<uint64_t> waits_at_start;  // host waits so far when step k + 1 starts
    TrainHooks hooks;
    add_model_passes(config, hooks);
    const auto pass_before = hooks.before_step;
    hooks.before_step = [&](models::Llama& model, int64_t done) {
      waits_at_start.push_back(sim::host_wait_count());
      if (pass_before) pass_before(model, done);
    };
    const uint64_t fp8_gemms = sim::fp8_matmul_count();
    train(config, hooks);
    // Tensorwise and rowwise float8 run their GEMMs (forward and both gradients) on cuBLASLt's fp8 kernels,
    // rowwise with outer-vector scales.
    if (std::string(run.name).starts_with("fp8_")) CHECK(sim::fp8_matmul_count() - fp8_gemms >= 8 * 3 * 7);
    REQUIRE(waits_at_start.size() == 8);
    // Steps 2, 3 and 4 and steps 6, 7 and 8 start right after a step that was not read back.
    for (size_t k : {1, 2, 3, 5, 6, 7})
      CHECK_MESSAGE(waits_at_start[k] == waits_at_start[k - 1], "the host waited ",
                    waits_at_start[k] - waits_at_start[k - 1], " time(s) in step ", k);
    // Reading 4 steps' losses and gradient norms back: one transfer (the copy, then the stream's end).
    CHECK(waits_at_start[4] - waits_at_start[3] <= 2);
  }
}
#endif
