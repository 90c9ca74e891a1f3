// Hugging Face model directories: loading the golden checkpoints, load -> save -> load bit for bit
// (f32 and bf16, sharded or not, tied or not), bf16 files widened to f32 exactly, and every load error.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/io/checkpoint_files.h"
#include "models/hf_checkpoint.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::models;
namespace fs = std::filesystem;
using testing::ScratchDir;

namespace {

bool bits_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

void check_same_parameters(Llama& a, Llama& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(pa[i].first == pb[i].first);
    CHECK(bits_equal(pa[i].second, pb[i].second));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every file of a directory, by name.
std::map<std::string, std::string> read_dir(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = read_file(e.path().string());
  return out;
}

// The golden checkpoint's tensors, to be edited into broken checkpoints.
std::vector<std::pair<std::string, Tensor>> golden_tensors(const std::string& variant) {
  const auto files = io::CheckpointFiles::open(testing::llama_golden_dir(variant));
  std::vector<std::pair<std::string, Tensor>> out;
  for (const std::string& name : files.names()) out.emplace_back(name, files.tensor(name).clone());
  return out;
}

// A model directory with the golden config and the given tensors; returns the load error (empty if none).
std::string load_error(const ScratchDir& dir, const std::string& variant,
                       const std::vector<std::pair<std::string, Tensor>>& tensors) {
  fs::copy_file(testing::llama_golden_dir(variant) + "/config.json", dir.str("config.json"),
                fs::copy_options::overwrite_existing);
  io::save_checkpoint_files(dir.str(), tensors);
  try {
    load_llama(dir.str());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_contains(const std::string& message, const std::vector<std::string>& needles) {
  REQUIRE_MESSAGE(!message.empty(), "expected an error");
  for (const std::string& needle : needles)
    CHECK_MESSAGE(message.find(needle) != std::string::npos, "'", needle, "' missing from: ", message);
}

}  // namespace

TEST_CASE("load_llama: parameters hold the file's tensors") {
  for (const std::string variant : testing::kLlamaVariants) {
    CAPTURE(variant);
    const std::string dir = testing::llama_golden_dir(variant);
    auto model = load_llama(dir);
    const auto files = io::CheckpointFiles::open(dir);
    for (const auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      CHECK(p.dtype() == DType::f32);
      CHECK(p.requires_grad());
      CHECK(bits_equal(p, files.tensor(name)));
    }
    CHECK(model->named_parameters().size() == files.names().size());
    CHECK(model->config().torch_dtype == "float32");
  }
}

TEST_CASE("load_llama_weights fills a live model as load_llama does, with the same checks") {
  for (const std::string variant : testing::kLlamaVariants) {
    CAPTURE(variant);
    const std::string dir = testing::llama_golden_dir(variant);
    auto loaded = load_llama(dir, {.activation_checkpointing = true});
    CHECK(loaded->options().activation_checkpointing);
    Llama live(load_llama_config(dir), {.seed = 7});  // random weights, all to be overwritten
    load_llama_weights(live, dir);
    check_same_parameters(live, *loaded);
  }
  // A model of another shape is refused, naming the tensor and both shapes.
  LlamaConfig other = load_llama_config(testing::llama_golden_dir("tied_gqa_llama3"));
  other.intermediate_size += 8;
  Llama wrong(other);
  std::string message;
  try {
    load_llama_weights(wrong, testing::llama_golden_dir("tied_gqa_llama3"));
  } catch (const Error& e) {
    message = e.what();
  }
  check_contains(message, {"model.layers.0.mlp.gate_proj.weight", "model.safetensors"});
}

TEST_CASE("load -> save -> load reproduces every tensor bit for bit") {
  for (const std::string variant : {"tied_gqa_llama3", "untied_gqa_headdim"}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      for (uint64_t shard : {uint64_t{0}, uint64_t{6000}}) {
        CAPTURE(variant);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shard);
        const ScratchDir first("first"), second("second");
        auto original = load_llama(testing::llama_golden_dir(variant), {.dtype = dtype});
        save_llama(*original, first.str(), {.max_shard_bytes = shard});
        auto reloaded = load_llama(first.str(), {.dtype = dtype});
        check_same_parameters(*original, *reloaded);
        LlamaConfig expected = original->config();
        expected.torch_dtype = dtype == DType::bf16 ? "bfloat16" : "float32";
        CHECK(reloaded->config() == expected);
        save_llama(*reloaded, second.str(), {.max_shard_bytes = shard});
        CHECK(read_dir(first.str()) == read_dir(second.str()));  // the files themselves are identical

        const auto files = io::CheckpointFiles::open(first.str());
        if (shard == 0) {
          CHECK(files.files().size() == 1);
        } else {
          CHECK(files.files().size() > 1);
          CHECK(fs::exists(first.str("model.safetensors.index.json")));
        }
        CHECK(files.contains("lm_head.weight") == !original->config().tie_word_embeddings);
        for (const std::string& name : files.names())
          CHECK(files.entry(name).dtype == (dtype == DType::bf16 ? io::StDType::BF16 : io::StDType::F32));
      }
    }
  }
}

TEST_CASE("a bf16 checkpoint loaded in f32 holds the bf16 values exactly") {
  const ScratchDir dir("bf16");
  auto wide = load_llama(testing::llama_golden_dir("untied_mha"));
  save_llama(*wide, dir.str(), {.dtype = DType::bf16});
  auto loaded = load_llama(dir.str());  // default compute dtype: f32
  CHECK(loaded->config().torch_dtype == "bfloat16");
  for (const auto& [name, p] : loaded->named_parameters()) {
    CAPTURE(name);
    CHECK(p.dtype() == DType::f32);
    CHECK(bits_equal(p, wide->find_parameter(name)->to(DType::bf16).to(DType::f32)));
  }
  // Saved back as bf16, the file is the same as the first bf16 save.
  const ScratchDir again("bf16_again");
  save_llama(*loaded, again.str(), {.dtype = DType::bf16});
  CHECK(read_file(dir.str("model.safetensors")) == read_file(again.str("model.safetensors")));
  // f16 weights load too.
  const ScratchDir half("f16");
  save_llama(*wide, half.str(), {.dtype = DType::f16});
  auto from_half = load_llama(half.str());
  const Tensor w = *from_half->find_parameter("model.layers.0.mlp.up_proj.weight");
  CHECK(bits_equal(w, wide->find_parameter("model.layers.0.mlp.up_proj.weight")->to(DType::f16).to(DType::f32)));
}

TEST_CASE("load_llama: a tied checkpoint may hold lm_head.weight") {
  const ScratchDir dir("tied_head");
  auto tensors = golden_tensors("tied_gqa_llama3");
  Tensor embed;
  for (const auto& [name, t] : tensors)
    if (name == "model.embed_tokens.weight") embed = t;
  tensors.emplace_back("lm_head.weight", embed.clone());
  CHECK(load_error(dir, "tied_gqa_llama3", tensors).empty());

  tensors.back().second = embed.narrow(0, 0, 10).clone();
  check_contains(load_error(dir, "tied_gqa_llama3", tensors), {"lm_head.weight", "[10, 32]", "[83, 32]"});
}

TEST_CASE("load_llama: every mismatch names the tensor, the file and the shapes") {
  const ScratchDir dir("broken");
  const std::string weights = dir.str("model.safetensors");
  SUBCASE("missing tensor") {
    auto tensors = golden_tensors("untied_mha");
    std::erase_if(tensors, [](const auto& item) { return item.first == "model.layers.1.mlp.down_proj.weight"; });
    check_contains(load_error(dir, "untied_mha", tensors),
                   {dir.str(), "missing tensor model.layers.1.mlp.down_proj.weight", "[32, 44]"});
  }
  SUBCASE("unexpected tensor") {
    auto tensors = golden_tensors("untied_mha");
    tensors.emplace_back("model.layers.2.mlp.up_proj.weight", Tensor::zeros({44, 32}));
    check_contains(load_error(dir, "untied_mha", tensors),
                   {"unexpected tensor model.layers.2.mlp.up_proj.weight", "[44, 32]", weights});
  }
  SUBCASE("wrong shape") {
    auto tensors = golden_tensors("untied_mha");
    for (auto& [name, t] : tensors)
      if (name == "model.norm.weight") t = Tensor::ones({31});
    check_contains(load_error(dir, "untied_mha", tensors), {"model.norm.weight", "[31]", "[32]", weights});
  }
  SUBCASE("integer weights") {
    auto tensors = golden_tensors("untied_mha");
    for (auto& [name, t] : tensors)
      if (name == "model.norm.weight") t = Tensor::ones({32}, DType::i32);
    check_contains(load_error(dir, "untied_mha", tensors), {"model.norm.weight", "I32", weights});
  }
  SUBCASE("several problems are reported together") {
    auto tensors = golden_tensors("untied_mha");
    std::erase_if(tensors, [](const auto& item) { return item.first == "lm_head.weight"; });
    tensors.emplace_back("extra", Tensor::zeros({2}));
    check_contains(load_error(dir, "untied_mha", tensors),
                   {"missing tensor lm_head.weight", "unexpected tensor extra"});
  }
  SUBCASE("missing config.json") {
    io::save_checkpoint_files(dir.str(), golden_tensors("untied_mha"));
    CHECK_THROWS_WITH_AS(load_llama(dir.str()), doctest::Contains(dir.str("config.json").c_str()), Error);
  }
  SUBCASE("missing weights") {
    fs::copy_file(testing::llama_golden_dir("untied_mha") + "/config.json", dir.str("config.json"));
    CHECK_THROWS_WITH_AS(load_llama(dir.str()), doctest::Contains("model.safetensors"), Error);
  }
}

TEST_CASE("save_llama: config.json describes the model and the file dtype") {
  const ScratchDir dir("config");
  Llama model(testing::tiny_llama_config(true), {.seed = 2});
  save_llama(model, dir.str(), {.dtype = DType::bf16});
  LlamaConfig expected = model.config();
  expected.torch_dtype = "bfloat16";
  CHECK(load_llama_config(dir.str()) == expected);
  CHECK_THROWS_WITH_AS(save_llama(model, dir.str(), {.dtype = DType::i32}), doctest::Contains("i32"), Error);
}
