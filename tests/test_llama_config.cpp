// LlamaConfig: parsing config.json as transformers 4 and 5 write it, every rejection rule, validation,
// the JSON writer and the parameter count.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "engine/check.h"
#include "models/llama_config.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::models;
using nlohmann::json;

namespace {

// A transformers 4 style config (rope_theta + rope_scaling, torch_dtype), as Llama 3.2 ships it.
json v4_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": true,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
    "pretraining_tp": 1, "use_cache": true, "initializer_range": 0.02, "some_future_field": {"x": 1}})");
}

LlamaConfig parse(const json& j) { return parse_llama_config(j.dump(), "test/config.json"); }

// The message parse() fails with (empty when it does not fail).
std::string parse_error(const json& j) {
  try {
    parse(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_error(const json& j, const std::vector<std::string>& needles) {
  const std::string message = parse_error(j);
  REQUIRE_MESSAGE(!message.empty(), "expected an error for ", j.dump());
  for (const std::string& needle : needles)
    CHECK_MESSAGE(message.find(needle) != std::string::npos, "'", needle, "' missing from: ", message);
}

}  // namespace

TEST_CASE("llama config: transformers 4 spelling") {
  const LlamaConfig c = parse(v4_config());
  CHECK(c.vocab_size == 128256);
  CHECK(c.hidden_size == 2048);
  CHECK(c.intermediate_size == 8192);
  CHECK(c.num_hidden_layers == 16);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.resolved_head_dim() == 64);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.rope_scaling.type == ops::RopeScaling::Type::llama3);
  CHECK(c.rope_scaling.factor == 32.0);
  CHECK(c.rope_scaling.low_freq_factor == 1.0);
  CHECK(c.rope_scaling.high_freq_factor == 4.0);
  CHECK(c.rope_scaling.original_max_position_embeddings == 8192);
  CHECK(c.max_position_embeddings == 131072);
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 128000);
  CHECK(c.eos_token_ids == std::vector<int32_t>{128001, 128008, 128009});
  CHECK(c.torch_dtype == "bfloat16");
  // Llama 3.2 1B: 1,235,814,400 parameters.
  CHECK(c.num_parameters() == 1235814400);
}

TEST_CASE("llama config: transformers 5 spelling (rope_parameters, dtype)") {
  json j = v4_config();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["dtype"] = "float32";
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 1000.0},
                          {"factor", 8.0},           {"low_freq_factor", 2.0},
                          {"high_freq_factor", 5.0}, {"original_max_position_embeddings", 64}};
  const LlamaConfig c = parse(j);
  CHECK(c.rope_theta == 1000.0);
  CHECK(c.rope_scaling.type == ops::RopeScaling::Type::llama3);
  CHECK(c.rope_scaling.factor == 8.0);
  CHECK(c.rope_scaling.low_freq_factor == 2.0);
  CHECK(c.rope_scaling.high_freq_factor == 5.0);
  CHECK(c.rope_scaling.original_max_position_embeddings == 64);
  CHECK(c.torch_dtype == "float32");

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  const LlamaConfig plain = parse(j);
  CHECK(plain.rope_theta == 10000.0);
  CHECK(plain.rope_scaling.type == ops::RopeScaling::Type::none);

  // A golden directory written by transformers 5.23's save_pretrained.
  const LlamaConfig saved = load_llama_config(std::string(QTUNE_GOLDEN_DIR) + "/llama/untied_gqa_headdim");
  CHECK(saved.resolved_head_dim() == 12);
  CHECK(saved.num_key_value_heads == 2);
  CHECK(saved.rope_theta == 1000.0);
  CHECK(saved.rope_scaling.type == ops::RopeScaling::Type::llama3);
  CHECK(saved.torch_dtype == "float32");
}

TEST_CASE("llama config: defaults and optional fields") {
  json j = v4_config();
  for (const char* key : {"num_key_value_heads", "head_dim", "rope_scaling", "tie_word_embeddings", "bos_token_id",
                          "eos_token_id", "torch_dtype", "rope_theta", "rms_norm_eps", "max_position_embeddings"})
    j.erase(key);
  const LlamaConfig c = parse(j);
  CHECK(c.num_key_value_heads == 32);  // multi-head attention, as transformers defaults
  CHECK(c.head_dim == 0);
  CHECK(c.resolved_head_dim() == 64);
  CHECK(c.rope_scaling.type == ops::RopeScaling::Type::none);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int32_t>{2});
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.max_position_embeddings == 2048);
  CHECK(c.torch_dtype == "float32");

  SUBCASE("null means absent or none") {
    j["head_dim"] = nullptr;
    j["num_key_value_heads"] = nullptr;
    j["rope_scaling"] = nullptr;
    j["bos_token_id"] = nullptr;
    j["eos_token_id"] = nullptr;
    const LlamaConfig n = parse(j);
    CHECK(n.resolved_head_dim() == 64);
    CHECK(n.num_key_value_heads == 32);
    CHECK(n.rope_scaling.type == ops::RopeScaling::Type::none);
    CHECK(n.bos_token_id == -1);
    CHECK(n.eos_token_ids.empty());
  }
  SUBCASE("eos as one int") {
    j["eos_token_id"] = 7;
    CHECK(parse(j).eos_token_ids == std::vector<int32_t>{7});
  }
  SUBCASE("an explicit head_dim other than hidden / heads") {
    j["head_dim"] = 128;
    const LlamaConfig h = parse(j);
    CHECK(h.resolved_head_dim() == 128);
    CHECK(h.num_parameters() > c.num_parameters());
  }
  SUBCASE("rope_scaling of type default, spelled the old way") {
    j["rope_scaling"] = {{"type", "default"}};
    CHECK(parse(j).rope_scaling.type == ops::RopeScaling::Type::none);
  }
}

TEST_CASE("llama config: every rejection names the field") {
  json j = v4_config();
  SUBCASE("unsupported model_type") {
    j["model_type"] = "mistral";
    check_error(j, {"test/config.json", "model_type", "mistral"});
  }
  SUBCASE("missing model_type") {
    j.erase("model_type");
    check_error(j, {"test/config.json", "model_type", "missing"});
  }
  SUBCASE("missing required size") {
    for (const char* key :
         {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
      json k = j;
      k.erase(key);
      check_error(k, {"test/config.json", key, "missing"});
    }
  }
  SUBCASE("wrong JSON types") {
    json k = j;
    k["hidden_size"] = "2048";
    check_error(k, {"hidden_size", "integer", "string"});
    k = j;
    k["num_hidden_layers"] = 16.5;
    check_error(k, {"num_hidden_layers", "integer"});
    k = j;
    k["rms_norm_eps"] = "1e-5";
    check_error(k, {"rms_norm_eps", "number"});
    k = j;
    k["tie_word_embeddings"] = 1;
    check_error(k, {"tie_word_embeddings", "boolean"});
    k = j;
    k["eos_token_id"] = "2";
    check_error(k, {"eos_token_id", "integer or a list"});
    k = j;
    k["eos_token_id"] = json::array({1, "2"});
    check_error(k, {"eos_token_id", "integer or a list"});
    k = j;
    k["rope_scaling"] = 8;
    check_error(k, {"rope_scaling", "object"});
    k = j;
    k["rope_scaling"]["factor"] = "32";
    check_error(k, {"rope_scaling.factor", "number"});
    k = j;
    k["torch_dtype"] = 16;
    check_error(k, {"torch_dtype", "string"});
  }
  SUBCASE("llama3 scaling without its parameters") {
    j["rope_scaling"].erase("low_freq_factor");
    check_error(j, {"rope_scaling.low_freq_factor", "missing"});
  }
  SUBCASE("unsupported rope types") {
    json k = j;
    k["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    check_error(k, {"rope_scaling.rope_type", "yarn"});
    k["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    check_error(k, {"rope_scaling.rope_type", "linear"});
    k = j;
    k["rope_parameters"] = {{"rope_type", "dynamic"}, {"rope_theta", 10000.0}};
    check_error(k, {"rope_parameters.rope_type", "dynamic"});
  }
  SUBCASE("biases and activations Llama does not have") {
    json k = j;
    k["attention_bias"] = true;
    check_error(k, {"attention_bias"});
    k = j;
    k["mlp_bias"] = true;
    check_error(k, {"mlp_bias"});
    k = j;
    k["hidden_act"] = "gelu";
    check_error(k, {"hidden_act", "gelu"});
  }
  SUBCASE("inconsistent values") {
    json k = j;
    k["num_key_value_heads"] = 5;
    check_error(k, {"test/config.json", "num_key_value_heads"});
    k = j;
    k["head_dim"] = 63;
    check_error(k, {"head_dim", "even"});
    k = j;
    k.erase("head_dim");
    k["num_attention_heads"] = 30;
    k["num_key_value_heads"] = 6;
    check_error(k, {"hidden_size", "num_attention_heads"});
    k = j;
    k["vocab_size"] = 0;
    check_error(k, {"vocab_size", "positive"});
    k = j;
    k["rope_scaling"]["high_freq_factor"] = 0.5;
    check_error(k, {"high_freq_factor"});
  }
  SUBCASE("not JSON, not an object") {
    CHECK_THROWS_WITH_AS(parse_llama_config("{\"model_type\": ", "x/config.json"), doctest::Contains("x/config.json"),
                         Error);
    CHECK_THROWS_WITH_AS(parse_llama_config("[1, 2]", "x/config.json"), doctest::Contains("object"), Error);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_WITH_AS(load_llama_config("/nonexistent/qtune_model"),
                         doctest::Contains("/nonexistent/qtune_model/config.json"), Error);
  }
}

TEST_CASE("llama config: sizes no machine holds are refused before anything is built") {
  json j = v4_config();
  SUBCASE("more parameters than this machine's memory holds even at 4 bits") {
    j["num_hidden_layers"] = 1000000;
    check_error(j, {"test/config.json", "num_hidden_layers 1000000", "more than this machine's", "GiB"});
  }
  SUBCASE("more parameters than any machine holds") {
    j["num_hidden_layers"] = 1099511627776;  // 2^40 layers: eval and generate used to allocate without bound
    check_error(j, {"test/config.json", "num_hidden_layers 1099511627776", "which no machine holds"});
  }
  SUBCASE("sizes whose product overflows") {
    j["vocab_size"] = int64_t{1} << 62;
    j["hidden_size"] = int64_t{1} << 40;
    j["num_attention_heads"] = 1;
    j["num_key_value_heads"] = 1;
    j.erase("head_dim");
    check_error(j, {"test/config.json", "vocab_size 4611686018427387904", "which no machine holds"});
  }
  SUBCASE("a real model fits, and check_fits_memory compares bytes per parameter") {
    const LlamaConfig c = parse(j);
    CHECK_NOTHROW(check_fits_memory(c, 0.5, "test/config.json"));
    CHECK(testing::error_of([&] { check_fits_memory(c, 1e12, "test/config.json"); }).find("test/config.json") == 0);
  }
}

TEST_CASE("llama config: llama_config_to_json round-trips") {
  LlamaConfig a = parse(v4_config());
  CHECK(parse_llama_config(llama_config_to_json(a)) == a);

  LlamaConfig b;
  b.vocab_size = 97;
  b.hidden_size = 48;
  b.intermediate_size = 100;
  b.num_hidden_layers = 3;
  b.num_attention_heads = 6;
  b.num_key_value_heads = 3;
  b.head_dim = 10;
  b.rms_norm_eps = 1.25e-5;
  b.rope_theta = 12345.5;
  b.bos_token_id = -1;
  b.eos_token_ids = {};
  b.torch_dtype = "float16";
  const LlamaConfig back = parse_llama_config(llama_config_to_json(b));
  CHECK(back == b);
  CHECK(back.resolved_head_dim() == 10);
  CHECK(back.bos_token_id == -1);
  CHECK(back.eos_token_ids.empty());

  b.eos_token_ids = {5};
  CHECK(parse_llama_config(llama_config_to_json(b)) == b);
  b.rope_theta = 10000.0;
  CHECK_FALSE(parse_llama_config(llama_config_to_json(b)) == a);

  const json written = json::parse(llama_config_to_json(a));
  CHECK(written["model_type"] == "llama");
  CHECK(written["architectures"] == json::array({"LlamaForCausalLM"}));
  CHECK(written["torch_dtype"] == "bfloat16");
}
