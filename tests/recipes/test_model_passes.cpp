// The model passes of `qtune run`: recipe qat trains through fake quantization (switched on after
// quant.fake_quant_after_n_steps, resumable bit for bit) and leaves a float model that converts to the real
// quantized modules; fp8.recipe trains through float8 linears; the config rejects combinations that
// cannot work.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "models/hf_checkpoint.h"
#include "models/lora.h"
#include "models/peft_adapter.h"
#include "ops/nn/linear.h"
#include "quant/fake_quantized_linear.h"
#include "quant/float8_frozen_linear.h"
#include "quant/float8_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/qat.h"
#include "recipe_fixtures.h"
#include "tests/llama_fixtures.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"
#include "tools/recipes/model_passes.h"
#include "tools/recipes/trainer.h"

using namespace qtune;
using namespace qtune::recipes;
using testing::lines_with;
using testing::tiny_run;
namespace fs = std::filesystem;

namespace {

template <class T>
int64_t count_modules(Module& root) {
  int64_t n = 0;
  for (const auto& [fqn, m] : root.named_modules()) n += dynamic_cast<T*>(m) != nullptr;
  return n;
}

TrainResult run_with_passes(const RunConfig& config) {
  TrainHooks hooks;
  add_model_passes(config, hooks);
  return train(config, hooks);
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> out;
  for (const auto& line : lines_with(run_dir, "loss")) out.push_back(line["loss"].get<double>());
  return out;
}

}  // namespace

TEST_CASE("recipe qat: fake quantization from step n on, and a float final model that converts") {
  testing::ScratchDir dir("passes_qat");
  const std::vector<std::string> common = {"train.steps=5", "schedule.name=constant"};
  train(tiny_run(dir.str("full"), common));
  std::vector<std::string> qat = common;
  qat.insert(qat.end(), {"recipe=qat", "quant.fake_quant_after_n_steps=2"});
  const RunConfig config = tiny_run(dir.str("qat"), qat);
  const TrainResult result = run_with_passes(config);

  // 2 layers x 7 projections; the head stays float.
  CHECK(count_modules<quant::FakeQuantizedLinear>(*result.model) == 14);
  const std::vector<double> plain = losses(dir.str("full")), fake = losses(dir.str("qat"));
  REQUIRE(plain.size() == 5);
  REQUIRE(fake.size() == 5);
  // Before the switch the prepared model computes exactly the float model; afterwards it does not.
  CHECK(fake[0] == plain[0]);
  CHECK(fake[1] == plain[1]);
  CHECK(fake[2] != plain[2]);
  CHECK(std::isfinite(fake[4]));

  // final/ is a float HF directory; converting it gives the prepared model's logits.
  const auto loaded = models::load_llama(result.final_dir);
  CHECK(count_modules<quant::FakeQuantizedLinear>(*loaded) == 0);
  quant::quantize_(*loaded, qat_config(config.quant));
  quant::quantize_(*loaded, {qat_config(config.quant).scheme, quant::QATStep::Convert});
  CHECK(count_modules<quant::Int8DynActInt4WeightLinear>(*loaded) == 14);
  const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 17, 33, 250, 9, 4}, {1, 6});
  NoGradGuard no_grad;
  result.model->eval();
  CHECK(testing::relative_error(loaded->forward(tokens), result.model->forward(tokens)) <= 1e-4);
  CHECK(qat_quantize_command(config.quant, "runs/x/final") ==
        "qtune quantize --model runs/x/final --scheme 8da4w --group-size 32 --out runs/x/final-8da4w");
}

TEST_CASE("recipe qat resumes bit for bit across the fake-quant switch") {
  testing::ScratchDir dir("passes_qat_resume");
  const std::vector<std::string> common = {"recipe=qat",
                                           "quant.scheme=int4wo",
                                           "quant.group_size=32",
                                           "quant.fake_quant_after_n_steps=4",
                                           "schedule.name=constant",
                                           "train.steps=6"};
  run_with_passes(tiny_run(dir.str("a"), common));
  std::vector<std::string> first = common;
  first.push_back("train.steps=3");
  run_with_passes(tiny_run(dir.str("b"), first));
  std::vector<std::string> resume = common;
  resume.push_back("train.resume=true");
  CHECK(run_with_passes(tiny_run(dir.str("b"), resume)).start_step == 3);
  CHECK(losses(dir.str("a")) == losses(dir.str("b")));
}

TEST_CASE("fp8.recipe trains through float8 linears and saves float weights") {
  testing::ScratchDir dir("passes_fp8");
  const std::vector<std::string> common = {"train.steps=4"};
  train(tiny_run(dir.str("full"), common));
  for (const char* recipe : {"tensorwise", "rowwise", "rowwise_with_gw_hp"}) {
    CAPTURE(recipe);
    std::vector<std::string> fp8 = common;
    fp8.push_back(std::string("fp8.recipe=") + recipe);
    const TrainResult result = run_with_passes(tiny_run(dir.str(recipe), fp8));
    CHECK(count_modules<quant::Float8Linear>(*result.model) == 14);
    const std::vector<double> plain = losses(dir.str("full")), f8 = losses(dir.str(recipe));
    REQUIRE(f8.size() == plain.size());
    // fp8 operands perturb every step a little, never the course of the run.
    CHECK(f8[0] != plain[0]);
    for (size_t i = 0; i < f8.size(); ++i) CHECK(std::fabs(f8[i] - plain[i]) <= 0.05 * plain[i]);
    CHECK(models::load_llama(result.final_dir)->named_parameters().size() == result.model->named_parameters().size());
  }
}

TEST_CASE("quant and fp8 keys: checked names, and combinations that cannot work") {
  const auto error = [](std::vector<std::string> overrides) {
    return testing::error_of([&] { tiny_run("unused", overrides); });
  };
  CHECK(error({"quant.scheme=int3", "recipe=qat"})
            .find("quant.scheme in override 'quant.scheme=int3': unknown QAT scheme 'int3' (valid: 8da4w, int4wo, "
                  "q4_0, q8_0, ggml_q4_0, ggml_q8_0)") != std::string::npos);
  CHECK(error({"quant.scheme=int4wo"}).find("configures the qat and qat_lora recipes; this config's recipe is full") !=
        std::string::npos);
  CHECK(error({"recipe=qat", "quant.group_size=48"})
            .find("quant.group_size in tiny_run with its overrides: QAT scheme 8da4w: group size 48 is not supported "
                  "(use 32, 64, 128 or 256)") != std::string::npos);
  CHECK(error({"recipe=qat", "quant.scheme=q4_0", "quant.group_size=64"}).find("q4_0 has fixed blocks of 32") !=
        std::string::npos);
  CHECK(error({"fp8.recipe=colwise"})
            .find("fp8.recipe in override 'fp8.recipe=colwise': float8: unknown recipe 'colwise' (valid: tensorwise, "
                  "rowwise, rowwise_with_gw_hp)") != std::string::npos);
  CHECK(error({"recipe=qat", "fp8.recipe=rowwise"}).find("float8 training and QAT (recipe qat) do not combine") !=
        std::string::npos);
  CHECK(error({"lora.rank=4"})
            .find("lora.rank in tiny_run with its overrides configures the lora, qlora and qat_lora "
                  "recipes; this config's recipe is full") != std::string::npos);
  CHECK(error({"recipe=lora", "lora.targets=[\"q_proj\",\"qkv\"]"})
            .find("lora.targets in tiny_run with its overrides must be one of q_proj | k_proj") != std::string::npos);
  CHECK(error({"recipe=lora", "lora.targets=\"q_proj\""}).find("lora.targets in override") != std::string::npos);
  CHECK(error({"recipe=qlora", "fp8.recipe=rowwise"}).find("the qlora base is NF4") != std::string::npos);
  // A group size that does not divide a layer fails when the model is prepared, naming the layer.
  testing::ScratchDir dir("passes_bad_group");
  CHECK(testing::error_of([&] {
          run_with_passes(tiny_run(dir.str("run"), {"recipe=qat", "quant.group_size=64"}));
        }).find("layer 'model.layers.0.self_attn.q_proj' has in_features = 32") != std::string::npos);
}

namespace {

// A float HF directory to fine-tune: the tiny run trained for 3 steps.
std::string trained_base(const testing::ScratchDir& dir) {
  return train(tiny_run(dir.str("base"), {"train.steps=3"})).final_dir;
}

std::vector<std::string> lora_run(const std::string& recipe, const std::string& base,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"recipe=" + recipe,       "model.config=null", "model.path=" + base,
                                "schedule.name=constant", "optim.lr=1e-2",     "lora.dropout=0.1"};
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

template <class Base>
int64_t count_lora_bases(models::Llama& model) {
  int64_t n = 0;
  for (auto& [fqn, lora] : models::lora_modules(model)) n += dynamic_cast<Base*>(&lora->base()) != nullptr;
  return n;
}

}  // namespace

TEST_CASE("recipe lora: only the adapters train, final/ is a PEFT adapter, resume is bit for bit") {
  testing::ScratchDir dir("passes_lora");
  const std::string base = trained_base(dir);
  const std::vector<std::string> all_targets = {
      "lora.targets=[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\",\"up_proj\",\"down_proj\"]",
      "train.steps=6", "train.save_every=3"};
  const TrainResult a = run_with_passes(tiny_run(dir.str("a"), lora_run("lora", base, all_targets)));
  CHECK(models::lora_modules(*a.model).size() == 14);
  CHECK(fs::exists(a.final_dir + "/adapter_model.safetensors"));
  CHECK(fs::exists(a.final_dir + "/adapter_config.json"));
  CHECK(!fs::exists(a.final_dir + "/model.safetensors"));
  CHECK(fs::exists(a.final_dir + "/tokenizer.model"));

  // The base is untouched; base + adapter computes what the trained model computes.
  const auto reloaded = models::load_llama(base);
  for (const auto& [name, t] : reloaded->named_parameters()) {
    CAPTURE(name);
    const Tensor* trained = a.model->find_parameter(name);
    REQUIRE(trained != nullptr);
    CHECK(trained->to_vector<float>() == t.to_vector<float>());
  }
  models::load_adapter(*reloaded, a.final_dir);
  {
    const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 17, 33, 250, 9, 4}, {1, 6});
    NoGradGuard no_grad;
    a.model->eval();
    reloaded->eval();
    const Tensor with_adapter = a.model->forward(tokens);
    QTUNE_CHECK_CLOSE(reloaded->forward(tokens), with_adapter, 0.0, 0.0);
    CHECK(testing::relative_error(models::load_llama(base)->forward(tokens), with_adapter) > 1e-3);
  }

  // Killed after the step-3 checkpoint, resumed: the same losses (dropout masks included).
  std::vector<std::string> first = all_targets;
  first.push_back("train.steps=3");
  run_with_passes(tiny_run(dir.str("b"), lora_run("lora", base, first)));
  std::vector<std::string> resume = all_targets;
  resume.push_back("train.resume=true");
  CHECK(run_with_passes(tiny_run(dir.str("b"), lora_run("lora", base, resume))).start_step == 3);
  CHECK(losses(dir.str("a")) == losses(dir.str("b")));
  CHECK(lora_export_command(tiny_run("x", lora_run("qlora", base)), "out/final") ==
        "qtune export --model " + base + " --adapter out/final --base-nf4 --format hf --out out/final-merged");
}

TEST_CASE("recipe qlora: NF4 frozen projections under the adapters, resumable") {
  testing::ScratchDir dir("passes_qlora");
  const std::string base = trained_base(dir);
  const TrainResult a =
      run_with_passes(tiny_run(dir.str("a"), lora_run("qlora", base, {"train.steps=4", "train.save_every=2"})));
  // q_proj and v_proj of both layers carry adapters over NF4; the other 10 projections are NF4 alone.
  CHECK(count_lora_bases<quant::FrozenNF4Linear>(*a.model) == 4);
  CHECK(count_modules<quant::FrozenNF4Linear>(*a.model) == 10);
  CHECK(dynamic_cast<nn::Linear*>(a.model->lm_head.get()) != nullptr);
  const std::vector<double> l = losses(dir.str("a"));
  REQUIRE(l.size() == 4);
  CHECK(std::isfinite(l[3]));
  run_with_passes(tiny_run(dir.str("b"), lora_run("qlora", base, {"train.steps=2", "train.save_every=2"})));
  run_with_passes(
      tiny_run(dir.str("b"), lora_run("qlora", base, {"train.steps=4", "train.save_every=2", "train.resume=true"})));
  CHECK(losses(dir.str("b")) == l);

  // With an adapter on the head, the head is NF4 under it too (docs/numerics.md §4).
  const TrainResult h = run_with_passes(
      tiny_run(dir.str("head"), lora_run("qlora", base, {"train.steps=2", "lora.targets=[\"q_proj\",\"lm_head\"]"})));
  CHECK(count_lora_bases<quant::FrozenNF4Linear>(*h.model) == 3);
  CHECK(dynamic_cast<models::LoRALinear*>(h.model->lm_head.get()) != nullptr);
}

TEST_CASE("recipe qat_lora: the frozen base is fake-quantized from step n on, under the adapters") {
  testing::ScratchDir dir("passes_qat_lora");
  const std::string base = trained_base(dir);
  run_with_passes(tiny_run(dir.str("lora"), lora_run("lora", base, {"train.steps=4"})));
  const TrainResult q = run_with_passes(
      tiny_run(dir.str("qat_lora"), lora_run("qat_lora", base, {"train.steps=4", "quant.fake_quant_after_n_steps=2"})));
  CHECK(count_lora_bases<quant::FakeQuantizedLinear>(*q.model) == 4);
  CHECK(count_modules<quant::FakeQuantizedLinear>(*q.model) == 10);
  const std::vector<double> plain = losses(dir.str("lora")), fake = losses(dir.str("qat_lora"));
  REQUIRE(fake.size() == 4);
  // Fake quantization off for two steps: exactly the LoRA run; then it reaches the wrapped bases too.
  CHECK(fake[0] == plain[0]);
  CHECK(fake[1] == plain[1]);
  CHECK(fake[2] != plain[2]);
}

TEST_CASE("recipe lora with fp8.recipe: the frozen base stored once in e4m3 under the adapters") {
  testing::ScratchDir dir("passes_lora_fp8");
  const std::string base = trained_base(dir);
  run_with_passes(tiny_run(dir.str("lora"), lora_run("lora", base, {"train.steps=3"})));
  const TrainResult f =
      run_with_passes(tiny_run(dir.str("fp8"), lora_run("lora", base, {"train.steps=3", "fp8.recipe=rowwise"})));
  CHECK(count_lora_bases<quant::Float8FrozenLinear>(*f.model) == 4);
  CHECK(count_modules<quant::Float8FrozenLinear>(*f.model) == 10);
  const std::vector<double> plain = losses(dir.str("lora")), f8 = losses(dir.str("fp8"));
  REQUIRE(f8.size() == 3);
  for (size_t i = 0; i < f8.size(); ++i) CHECK(std::fabs(f8[i] - plain[i]) <= 0.05 * plain[i]);
  CHECK(f8[0] != plain[0]);
  CHECK(fs::exists(f.final_dir + "/adapter_model.safetensors"));
}
