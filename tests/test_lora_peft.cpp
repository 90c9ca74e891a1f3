// HF PEFT adapter directories: a real one written by peft (tools/goldens/gen_lora.py) gives peft's
// logits in qtune, qtune's own adapters have PEFT's layout and round-trip, and adapters that do not fit
// fail naming the module and the mismatch.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/safetensors.h"
#include "models/hf_checkpoint.h"
#include "models/lora.h"
#include "models/peft_adapter.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
namespace fs = std::filesystem;

namespace {

const std::string kPeftDir = std::string(QTUNE_GOLDEN_DIR) + "/lora/peft_adapter";

io::SafetensorsFile reference() { return io::SafetensorsFile::open(kPeftDir + "/reference.safetensors"); }

Tensor logits(models::Llama& model, const Tensor& tokens) {
  EvalModeGuard eval(model);
  NoGradGuard no_grad;
  return model.forward(tokens);
}

std::shared_ptr<models::Llama> base_model(const std::string& variant = "untied_mha") {
  return models::load_llama(testing::llama_golden_dir(variant));
}

// A copy of peft's adapter whose adapter_config.json is edited by `edit`.
void copy_adapter(const std::string& to, const std::function<void(nlohmann::json&)>& edit) {
  fs::create_directories(to);
  fs::copy_file(kPeftDir + "/adapter_model.safetensors", to + "/adapter_model.safetensors");
  std::ifstream in(kPeftDir + "/adapter_config.json");
  nlohmann::json cfg = nlohmann::json::parse(in);
  edit(cfg);
  std::ofstream(to + "/adapter_config.json") << cfg.dump();
}

}  // namespace

TEST_CASE("an adapter written by peft gives peft's logits") {
  const models::LoraConfig config = models::load_adapter_config(kPeftDir);
  CHECK(config.rank == 4);
  CHECK(config.alpha == 8.0);
  CHECK(config.dropout == 0.0);
  CHECK(config.targets == std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj",
                                                   "up_proj", "v_proj"});
  auto model = base_model();
  const Tensor tokens = reference().tensor("tokens");
  const Tensor plain = logits(*model, tokens);
  models::load_adapter(*model, kPeftDir);
  CHECK(models::lora_modules(*model).size() == 15);
  const Tensor expected = reference().tensor("logits");
  CHECK(testing::relative_error(logits(*model, tokens), expected) < 1e-5);
  CHECK(testing::relative_error(plain, expected) > 1e-2);  // the adapter matters
  // merging gives the same logits (peft's merge_and_unload agrees at generation time)
  models::merge_lora(*model);
  CHECK(testing::relative_error(logits(*model, tokens), expected) < 1e-5);
}

TEST_CASE("qtune's adapter has peft's layout and round-trips") {
  testing::ScratchDir dir("lora_adapter");
  auto model = base_model();
  models::load_adapter(*model, kPeftDir);
  const models::LoraConfig config = models::load_adapter_config(kPeftDir);
  models::save_adapter(*model, config, dir.str(), "tests/golden/llama/untied_mha");

  const auto ours = io::SafetensorsFile::open(dir.str("adapter_model.safetensors"));
  const auto peft = io::SafetensorsFile::open(kPeftDir + "/adapter_model.safetensors");
  std::set<std::string> our_keys, peft_keys;
  for (const auto& e : ours.entries()) our_keys.insert(e.name);
  for (const auto& e : peft.entries()) peft_keys.insert(e.name);
  CHECK(our_keys == peft_keys);
  for (const auto& e : peft.entries()) {
    CAPTURE(e.name);
    CHECK(ours.at(e.name).dtype == e.dtype);
    CHECK(testing::relative_error(ours.tensor(e.name), peft.tensor(e.name)) == 0.0);
  }
  std::ifstream in(dir.str("adapter_config.json"));
  const nlohmann::json cfg = nlohmann::json::parse(in);
  CHECK(cfg.at("peft_type") == "LORA");
  CHECK(cfg.at("task_type") == "CAUSAL_LM");
  CHECK(cfg.at("bias") == "none");
  CHECK(cfg.at("r") == 4);
  CHECK(cfg.at("lora_alpha") == 8);
  CHECK(cfg.at("lora_dropout") == 0.0);
  CHECK(cfg.at("base_model_name_or_path") == "tests/golden/llama/untied_mha");
  CHECK(cfg.at("target_modules").size() == 8);

  auto fresh = base_model();
  models::load_adapter(*fresh, dir.str());
  const Tensor tokens = reference().tensor("tokens");
  CHECK(testing::relative_error(logits(*fresh, tokens), reference().tensor("logits")) < 1e-5);

  // QTUNE_LORA_ADAPTER_OUT=DIR keeps an adapter and its logits for `gen_lora.py --check DIR` (peft loads it).
  if (const char* out = std::getenv("QTUNE_LORA_ADAPTER_OUT")) {
    models::save_adapter(*fresh, config, out, "tests/golden/llama/untied_mha");
    io::save_safetensors(std::string(out) + "/qtune_logits.safetensors",
                         {{"tokens", tokens}, {"logits", logits(*fresh, tokens)}});
  }
}

TEST_CASE("a bf16 model writes a bf16 adapter") {
  testing::ScratchDir dir("lora_bf16");
  auto model = models::load_llama(testing::llama_golden_dir("untied_mha"), {.dtype = DType::bf16});
  const models::LoraConfig config{.rank = 2, .alpha = 2, .targets = {"q_proj"}};
  models::apply_lora(*model, config);
  models::save_adapter(*model, config, dir.str(), "base");
  const auto file = io::SafetensorsFile::open(dir.str("adapter_model.safetensors"));
  CHECK(file.entries().size() == 4);
  CHECK(file.at("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight").dtype == io::StDType::BF16);
  CHECK_THROWS_WITH_AS(models::save_adapter(*model, {.rank = 2, .alpha = 2, .targets = {"v_proj"}}, dir.str(), "base"),
                       doctest::Contains("'q_proj' is not in the config's targets"), Error);
  CHECK_THROWS_WITH_AS(models::save_adapter(*model, {.rank = 4, .alpha = 2}, dir.str(), "base"),
                       doctest::Contains("model.layers.0.self_attn.q_proj has rank 2"), Error);
}

TEST_CASE("adapters that do not fit the model fail naming the module") {
  testing::ScratchDir dir("lora_bad");
  SUBCASE("other shapes") {
    auto model = base_model("untied_gqa_headdim");
    CHECK_THROWS_WITH_AS(models::load_adapter(*model, kPeftDir),
                         doctest::Contains("module model.layers.0.self_attn.k_proj expects"), Error);
    CHECK(models::lora_modules(*model).empty());  // nothing applied
  }
  SUBCASE("a model with other LoRA targets and rank") {
    auto model = base_model();
    models::apply_lora(*model, {.rank = 8, .alpha = 8, .targets = {"q_proj"}});
    CHECK_THROWS_WITH_AS(
        models::load_adapter(*model, kPeftDir),
        doctest::Contains(
            "module model.layers.0.mlp.down_proj has adapter tensors but is not a LoRA target of the model"),
        Error);
    CHECK_THROWS_WITH_AS(
        models::load_adapter(*model, kPeftDir),
        doctest::Contains("module model.layers.0.self_attn.q_proj has LoRA rank 8, the adapter has r = 4"), Error);
  }
  SUBCASE("the config's rank differs from the tensors'") {
    copy_adapter(dir.str("a"), [](nlohmann::json& c) { c["r"] = 2; });
    CHECK_THROWS_WITH_AS(models::load_adapter(*base_model(), dir.str("a")),
                         doctest::Contains("lora_A.weight has shape [4, 32], module model.layers.0.mlp.gate_proj "
                                           "expects [2, 32] (rank differs"),
                         Error);
  }
  SUBCASE("the config targets fewer modules than the file holds") {
    copy_adapter(dir.str("a"), [](nlohmann::json& c) { c["target_modules"] = {"q_proj", "k_proj"}; });
    CHECK_THROWS_WITH_AS(models::load_adapter(*base_model(), dir.str("a")),
                         doctest::Contains("module lm_head has adapter tensors but is not a LoRA target"), Error);
  }
  SUBCASE("a target qtune's Llama does not have") {
    copy_adapter(dir.str("a"), [](nlohmann::json& c) { c["target_modules"] = {"q_proj", "embed_tokens"}; });
    CHECK_THROWS_WITH_AS(models::load_adapter(*base_model(), dir.str("a")),
                         doctest::Contains("target module 'embed_tokens' is not one qtune's Llama has"), Error);
  }
  SUBCASE("peft's whole-head tensor (save_embedding_layers)") {
    copy_adapter(dir.str("a"), [](nlohmann::json&) {});
    const auto peft = io::SafetensorsFile::open(kPeftDir + "/adapter_model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& e : peft.entries()) tensors.emplace_back(e.name, peft.tensor(e.name));
    tensors.emplace_back("base_model.model.lm_head.base_layer.weight", Tensor::zeros({83, 32}));
    io::save_safetensors(dir.str("a/adapter_model.safetensors"), tensors);
    CHECK_THROWS_WITH_AS(models::load_adapter(*base_model(), dir.str("a")),
                         doctest::Contains("hint: save with save_embedding_layers=False"), Error);
  }
  SUBCASE("a tied model cannot take an lm_head adapter") {
    auto tied = base_model("tied_gqa_llama3");
    CHECK_THROWS_WITH_AS(models::load_adapter(*tied, kPeftDir), doctest::Contains("tie_word_embeddings"), Error);
    CHECK(models::lora_modules(*tied).empty());
  }
}

TEST_CASE("malformed adapter configs name the file and key") {
  testing::ScratchDir dir("lora_json");
  const std::string path = dir.str("a/adapter_config.json");
  SUBCASE("missing key") {
    copy_adapter(dir.str("a"), [](nlohmann::json& c) { c.erase("r"); });
    CHECK_THROWS_WITH_AS(models::load_adapter_config(dir.str("a")),
                         doctest::Contains(("r in " + path + " is missing").c_str()), Error);
  }
  SUBCASE("wrong types and unsupported options") {
    const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
        {[](nlohmann::json& c) { c["r"] = "4"; }, "r in ADAPTER must be a positive integer"},
        {[](nlohmann::json& c) { c["lora_alpha"] = nullptr; }, "lora_alpha in ADAPTER must be a number"},
        {[](nlohmann::json& c) { c["target_modules"] = ".*proj"; },
         "target_modules in ADAPTER must be a non-empty list"},
        {[](nlohmann::json& c) { c["peft_type"] = "IA3"; }, "peft_type in ADAPTER must be \"LORA\""},
        {[](nlohmann::json& c) { c["use_dora"] = true; }, "use_dora in ADAPTER must be false"},
        {[](nlohmann::json& c) {
           c["rank_pattern"] = {{"q_proj", 8}};
         },
         "rank_pattern in ADAPTER must be empty"},
        {[](nlohmann::json& c) { c["lora_dropout"] = 1.5; }, "lora_dropout in ADAPTER must be a number in [0, 1)"},
    };
    int i = 0;
    for (const auto& [edit, message] : cases) {
      const std::string sub = dir.str(std::to_string(i++));
      copy_adapter(sub, edit);
      const std::string expected = message.substr(0, message.find("ADAPTER")) + sub + "/adapter_config.json" +
                                   message.substr(message.find("ADAPTER") + 7);
      CHECK_THROWS_WITH_AS(models::load_adapter_config(sub), doctest::Contains(expected.c_str()), Error);
    }
  }
  SUBCASE("invalid JSON") {
    copy_adapter(dir.str("a"), [](nlohmann::json&) {});
    std::ofstream(path) << "{\"r\": 4,";
    CHECK_THROWS_WITH_AS(models::load_adapter_config(dir.str("a")),
                         doctest::Contains((path + ": not valid JSON").c_str()), Error);
  }
  SUBCASE("no adapter directory") {
    CHECK_THROWS_WITH_AS(models::load_adapter_config(dir.str("none")),
                         doctest::Contains("adapter_config.json not found (hint: an adapter directory holds"), Error);
  }
}
