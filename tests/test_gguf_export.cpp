// GGUF export of a Llama (docs/numerics.md §9): every tensor lands under llama.cpp's name with the q/k rows in
// llama.cpp's RoPE order, f16 / bf16 are the plain casts, Q4_0 / Q8_0 blocks dequantize to exactly the weights
// QAT's q4_0 / q8_0 fake quantization trained with, and the metadata and tokenizer keys are llama.cpp's.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "engine/io/gguf_file.h"
#include "engine/io/json_reader.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "models/gguf_export.h"
#include "models/gguf_layout.h"
#include "models/lora.h"
#include "quant/qat.h"
#include "quant/qat_config.h"
#include "quant/qat_fake_quantize.h"
#include "tests/llama_fixtures.h"
#include "tests/scratch_files.h"

using namespace qtune;
using io::GgmlType;
using testing::error_of;

namespace {

const std::string kSpTokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp/tokenizer.model";
const std::string kBpeTokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/llama3_style.json";

// aligned_llama_config with room for a tokenizer's vocabulary.
models::LlamaConfig config_with_vocab(int64_t vocab, bool tied) {
  models::LlamaConfig c = testing::aligned_llama_config(tied);
  c.vocab_size = vocab;
  return c;
}

io::GgufFile export_file(models::Llama& model, const data::Tokenizer& tokenizer, models::GgufFileType type,
                         const std::string& path) {
  models::save_gguf(model, path, {.type = type, .tokenizer = &tokenizer, .chat_template = "{{ x }}", .name = "t"});
  return io::GgufFile::open(path);
}

// The file's tensor `hf_name` as the model holds it: dequantized, rows back in Hugging Face's order.
Tensor read_back(const io::GgufFile& file, const models::Llama& model, const std::string& hf_name) {
  const Tensor t = file.dequantize(file.tensor_info(*models::gguf_tensor_name(hf_name)));
  const auto& c = model.config();
  const int64_t heads = models::gguf_rope_heads(hf_name, c.num_attention_heads, c.num_key_value_heads);
  return heads ? models::rope_rows_from_gguf(t, heads) : t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

}  // namespace

TEST_CASE("GGUF names and the RoPE row order") {
  CHECK(models::gguf_tensor_name("model.layers.12.self_attn.q_proj.weight") == "blk.12.attn_q.weight");
  CHECK(models::gguf_tensor_name("model.layers.0.post_attention_layernorm.weight") == "blk.0.ffn_norm.weight");
  CHECK(models::gguf_tensor_name("lm_head.weight") == "output.weight");
  CHECK_FALSE(models::gguf_tensor_name("model.layers.0.self_attn.q_proj.lora_A.weight").has_value());
  CHECK_FALSE(models::gguf_tensor_name("model.layers.01.mlp.up_proj.weight").has_value());
  CHECK(models::hf_tensor_name("blk.3.ffn_down.weight") == "model.layers.3.mlp.down_proj.weight");
  CHECK_FALSE(models::hf_tensor_name("rope_freqs.weight").has_value());
  CHECK_FALSE(models::hf_tensor_name("blk.x.ffn_down.weight").has_value());

  // Two heads of dim 4, one column holding each row's index: within a head, row 2i + j comes from row
  // j * 2 + i, so the halves (0, 1 | 2, 3) interleave to 0, 2, 1, 3.
  const Tensor w = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}, {8, 1});
  CHECK(models::rope_rows_to_gguf(w, 2).to_vector<float>() == std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7});
  CHECK(same_bits(models::rope_rows_from_gguf(models::rope_rows_to_gguf(w, 2), 2), w));
  CHECK(error_of([&] { models::rope_rows_to_gguf(w, 3); }).find("does not split into 3 heads") != std::string::npos);
}

TEST_CASE("GGUF export: f32, f16 and bf16 hold the model's tensors, plain and cast") {
  testing::ScratchDir dir("gguf_export_float");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    models::Llama model(config_with_vocab(512, tied), {.seed = 3});
    for (const auto type : {models::GgufFileType::f32, models::GgufFileType::f16, models::GgufFileType::bf16}) {
      CAPTURE(models::gguf_file_type_name(type));
      const auto file = export_file(model, *tokenizer, type, dir.file("m.gguf"));
      const auto params = model.named_parameters();
      CHECK(file.tensors().size() == params.size());
      CHECK((file.find_tensor("output.weight") != nullptr) == !tied);
      for (const auto& [name, p] : params) {
        CAPTURE(name);
        const GgmlType want_type = p.dim() == 1                         ? GgmlType::f32
                                   : type == models::GgufFileType::f16  ? GgmlType::f16
                                   : type == models::GgufFileType::bf16 ? GgmlType::bf16
                                                                        : GgmlType::f32;
        CHECK(file.tensor_info(*models::gguf_tensor_name(name)).type == want_type);
        Tensor want = p.detach().contiguous();
        if (want_type != GgmlType::f32) {
          std::vector<float> v = want.to_vector<float>();
          for (float& x : v) x = want_type == GgmlType::f16 ? numerics::round_to_f16(x) : numerics::round_to_bf16(x);
          want = Tensor::from_vector(v, want.shape());
        }
        CHECK(same_bits(read_back(file, model, name), want));
      }
    }
  }
}

TEST_CASE("GGUF export: Q4_0 / Q8_0 blocks dequantize to exactly the fake-quantized weights QAT trained with") {
  testing::ScratchDir dir("gguf_export_qat");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const auto& [scheme, type] : {std::pair{quant::LinearScheme{quant::Q4_0{}}, models::GgufFileType::q4_0},
                                     std::pair{quant::LinearScheme{quant::Q8_0{}}, models::GgufFileType::q8_0}}) {
    CAPTURE(models::gguf_file_type_name(type));
    models::Llama model(config_with_vocab(512, false), {.seed = 5});
    CHECK(quant::quantize_(model, quant::QATConfig{scheme, quant::QATStep::Prepare}) == 14);
    const auto file = export_file(model, *tokenizer, type, dir.file("m.gguf"));
    int64_t projections = 0;
    for (const auto& [name, p] : model.named_parameters()) {
      CAPTURE(name);
      const GgmlType stored = file.tensor_info(*models::gguf_tensor_name(name)).type;
      const Tensor got = read_back(file, model, name);
      if (p.dim() == 1) {
        CHECK(stored == GgmlType::f32);
        CHECK(same_bits(got, p.detach()));
      } else if (name.ends_with("_proj.weight")) {
        // What the training forward multiplied by.
        CHECK(stored == (type == models::GgufFileType::q4_0 ? GgmlType::q4_0 : GgmlType::q8_0));
        CHECK(same_bits(got, quant::fake_quantize(p.detach(), quant::weight_spec(scheme))));
        ++projections;
      } else {
        // The embedding and the head stay in Q8_0 in a Q4_0 file: q4_0 QAT does not train them.
        CHECK(stored == GgmlType::q8_0);
        CHECK(same_bits(got, quant::fake_quantize(p.detach(), quant::weight_spec(quant::Q8_0{}))));
      }
    }
    CHECK(projections == 14);
    CHECK(file.at("general.file_type").to_int("") == static_cast<int64_t>(type));
  }
}

TEST_CASE("GGUF export: rows that are not whole blocks fall back to F16") {
  const models::LlamaConfig c;
  CHECK(models::gguf_tensor_type("model.layers.0.mlp.down_proj.weight", {24, 37}, models::GgufFileType::q4_0, c) ==
        GgmlType::f16);
  CHECK(models::gguf_tensor_type("model.layers.0.mlp.up_proj.weight", {37, 32}, models::GgufFileType::q4_0, c) ==
        GgmlType::q4_0);
  CHECK(models::gguf_tensor_type("model.norm.weight", {32}, models::GgufFileType::q8_0, c) == GgmlType::f32);
  CHECK(models::gguf_file_type_from_name("q4_0") == models::GgufFileType::q4_0);
  CHECK_FALSE(models::gguf_file_type_from_name("q4_k").has_value());
}

TEST_CASE("GGUF export: q4_k_m mixes types as llama-quantize does") {
  models::LlamaConfig c = testing::aligned_llama_config(false);
  c.num_hidden_layers = 12;  // more bits: layers 0 and 10, 11 (first and last eighth), then 3, 6, 9
  const auto type = [&](const std::string& name, Shape shape) {
    return models::gguf_tensor_type(name, shape, models::GgufFileType::q4_k_m, c);
  };
  for (int64_t layer = 0; layer < 12; ++layer) {
    CAPTURE(layer);
    const bool more = layer == 0 || layer == 3 || layer == 6 || layer == 9 || layer >= 10;
    const std::string prefix = "model.layers." + std::to_string(layer);
    CHECK(type(prefix + ".self_attn.v_proj.weight", {256, 512}) == (more ? GgmlType::q6_k : GgmlType::q4_k));
    CHECK(type(prefix + ".mlp.down_proj.weight", {512, 1024}) == (more ? GgmlType::q6_k : GgmlType::q4_k));
    CHECK(type(prefix + ".self_attn.q_proj.weight", {512, 512}) == GgmlType::q4_k);
    CHECK(type(prefix + ".mlp.up_proj.weight", {1024, 512}) == GgmlType::q4_k);
    CHECK(type(prefix + ".input_layernorm.weight", {512}) == GgmlType::f32);
  }
  CHECK(type("model.embed_tokens.weight", {300, 512}) == GgmlType::q4_k);
  CHECK(type("lm_head.weight", {300, 512}) == GgmlType::q6_k);
  CHECK(type("lm_head.weight", {300, 96}) == GgmlType::q8_0);  // not whole super-blocks
  // Rows that are not whole super-blocks: Q4_K falls back to Q5_0, Q6_K to Q8_0, either to F16 below 32.
  CHECK(type("model.layers.1.self_attn.q_proj.weight", {64, 64}) == GgmlType::q5_0);
  CHECK(type("model.layers.0.self_attn.v_proj.weight", {64, 64}) == GgmlType::q8_0);
  CHECK(type("model.layers.1.mlp.gate_proj.weight", {64, 40}) == GgmlType::f16);
  c.tie_word_embeddings = true;  // the embedding is the head
  CHECK(type("model.embed_tokens.weight", {300, 512}) == GgmlType::q6_k);
  // A 70B (80 layers, grouped kv heads) takes Q5_K for the attn_v that get no Q6_K.
  c.num_hidden_layers = 80;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  CHECK(type("model.layers.20.self_attn.v_proj.weight", {256, 512}) == GgmlType::q5_k);
  CHECK(type("model.layers.12.self_attn.v_proj.weight", {256, 512}) == GgmlType::q6_k);
  CHECK(type("model.layers.20.mlp.down_proj.weight", {512, 1024}) == GgmlType::q4_k);
  c.num_key_value_heads = 8;
  CHECK(type("model.layers.20.self_attn.v_proj.weight", {256, 512}) == GgmlType::q4_k);
  CHECK(models::gguf_file_type_from_name("q4_k_m") == models::GgufFileType::q4_k_m);
}

// A model whose rows are whole Q4_K super-blocks, with more than ten blocks (llama.cpp orders blk.10 after blk.9).
models::LlamaConfig k_quant_config(bool tied) {
  models::LlamaConfig c = testing::aligned_llama_config(tied);
  c.hidden_size = 256;
  c.intermediate_size = 256;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.num_hidden_layers = 11;
  c.vocab_size = 512;
  return c;
}

TEST_CASE("GGUF export: a q4_k_m file has llama-quantize's order and types, its blocks decode near the weights") {
  testing::ScratchDir dir("gguf_export_q4_k_m");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    models::Llama model(k_quant_config(tied), {.seed = 5});
    const auto file = export_file(model, *tokenizer, models::GgufFileType::q4_k_m, dir.file("m.gguf"));
    const auto& keys = file.header().metadata;
    REQUIRE(keys.size() >= 2);
    CHECK(keys[keys.size() - 2].first == "general.quantization_version");
    CHECK(keys.back().first == "general.file_type");
    CHECK(file.at("general.file_type").to_int("") == 15);
    std::vector<std::string> names;
    for (const auto& t : file.header().tensors) names.push_back(t.name);
    std::vector<std::string> want = {"output_norm.weight", "token_embd.weight"};
    if (!tied) want.insert(want.begin(), "output.weight");
    for (int layer = 0; layer < 11; ++layer)
      for (const char* t :
           {"attn_k", "attn_norm", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_norm", "ffn_up"})
        want.push_back("blk." + std::to_string(layer) + "." + t + ".weight");
    CHECK(names == want);
    std::map<GgmlType, int> counts;
    for (auto& [name, p] : model.named_parameters()) {
      CAPTURE(name);
      const auto& info = file.tensor_info(*models::gguf_tensor_name(name));
      CHECK(info.type == models::gguf_tensor_type(name, p.shape(), models::GgufFileType::q4_k_m, model.config()));
      ++counts[info.type];
      const Tensor w = p.detach().contiguous();
      const std::vector<float> got = read_back(file, model, name).to_vector<float>();
      const std::vector<float> ref = w.to_vector<float>();
      double amax = 0, err = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        amax = std::max(amax, std::fabs(static_cast<double>(ref[i])));
        err = std::max(err, std::fabs(static_cast<double>(got[i]) - ref[i]));
      }
      const double bound = info.type == GgmlType::q4_k ? 2.0 / 15 : info.type == GgmlType::q6_k ? 1.0 / 32 : 0.0;
      CHECK(err <= bound * amax);
    }
    CHECK(counts[GgmlType::q6_k] == 1 + 2 * 5);  // the head; attn_v and ffn_down of layers 0, 3, 6, 9, 10
    CHECK(counts[GgmlType::q4_k] == 11 * 7 - 2 * 5 + (tied ? 0 : 1));
  }
}

TEST_CASE("GGUF export: a weight that is not finite is refused by name, and no file is left") {
  testing::ScratchDir dir("gguf_export_nan");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  models::Llama model(config_with_vocab(512, false), {.seed = 2});
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : model.named_parameters())
      if (name == "model.layers.1.mlp.up_proj.weight")
        p.detach().data<float>()[5] = std::numeric_limits<float>::infinity();
  }
  const std::string error =
      error_of([&] { export_file(model, *tokenizer, models::GgufFileType::q4_k_m, dir.file("m.gguf")); });
  CHECK_MESSAGE(
      error.find("blk.1.ffn_up.weight holds inf at element 5 (llama.cpp refuses weights that are not finite)") !=
          std::string::npos,
      error);
  CHECK_FALSE(std::filesystem::exists(dir.file("m.gguf")));
}

// Needs llama.cpp's llama-quantize (QTUNE_LLAMA_CPP_BIN: the directory of a llama.cpp build; or on PATH): ctest's
// gguf_llama_quantize runs this case alone and reports SKIPPED (77) without it.
TEST_CASE("GGUF export: q4_k_m is byte for byte llama-quantize's file from the f32 export" * doctest::skip()) {
  const char* bin_dir = std::getenv("QTUNE_LLAMA_CPP_BIN");
  std::string quantize = bin_dir ? std::string(bin_dir) + "/llama-quantize" : "";
  if (quantize.empty() || !std::filesystem::exists(quantize)) {
    if (std::system("command -v llama-quantize >/dev/null 2>&1") == 0) {
      quantize = "llama-quantize";
    } else {
      std::printf("SKIPPED: llama-quantize not found (set QTUNE_LLAMA_CPP_BIN to a llama.cpp build's bin directory)\n");
      std::exit(77);
    }
  }
  testing::ScratchDir dir("gguf_llama_quantize");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  // Whole super-blocks, untied and tied; and rows of 32 and 64 weights, where Q4_K and Q6_K fall back.
  for (const auto& config : {k_quant_config(false), k_quant_config(true), config_with_vocab(512, false)}) {
    CAPTURE(config.hidden_size);
    CAPTURE(config.tie_word_embeddings);
    models::Llama model(config, {.seed = 9});
    export_file(model, *tokenizer, models::GgufFileType::f32, dir.file("f32.gguf"));
    export_file(model, *tokenizer, models::GgufFileType::q4_k_m, dir.file("ours.gguf"));
    const std::string lib = bin_dir ? "LD_LIBRARY_PATH=" + std::string(bin_dir) + " " : "";
    const std::string command = lib + quantize + " " + dir.file("f32.gguf") + " " + dir.file("theirs.gguf") +
                                " Q4_K_M >" + dir.file("quantize.log") + " 2>&1";
    REQUIRE_MESSAGE(std::system(command.c_str()) == 0, command, " failed: see ", dir.file("quantize.log"));
    const std::string ours = testing::read_bytes(dir.file("ours.gguf")),
                      theirs = testing::read_bytes(dir.file("theirs.gguf"));
    CHECK(ours.size() == theirs.size());
    CHECK_MESSAGE(ours == theirs, "first differing byte: ",
                  std::mismatch(ours.begin(), ours.end(), theirs.begin(), theirs.end()).first - ours.begin());
  }
}

TEST_CASE("GGUF export: llama.cpp's metadata, SentencePiece tokenizer keys") {
  testing::ScratchDir dir("gguf_export_meta");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  models::LlamaConfig c = testing::tiny_llama_config(false);  // head_dim 8 differs from hidden / heads = 6
  c.vocab_size = 512;
  models::Llama model(c, {.seed = 1});
  const auto file = export_file(model, *tokenizer, models::GgufFileType::f32, dir.file("m.gguf"));
  auto integer = [&](const char* key) { return file.at(key).to_int(key); };
  CHECK(file.at("general.architecture").to_string("") == "llama");
  CHECK(integer("llama.block_count") == 2);
  CHECK(integer("llama.embedding_length") == 24);
  CHECK(integer("llama.feed_forward_length") == 37);
  CHECK(integer("llama.attention.head_count") == 4);
  CHECK(integer("llama.attention.head_count_kv") == 2);
  CHECK(integer("llama.rope.dimension_count") == 8);
  CHECK(integer("llama.attention.key_length") == 8);
  CHECK(integer("llama.context_length") == 128);
  CHECK(integer("llama.vocab_size") == 512);
  CHECK(file.at("llama.rope.freq_base").to_double("") == 1000.0);
  CHECK(file.at("llama.attention.layer_norm_rms_epsilon").to_double("") == doctest::Approx(1e-5));
  CHECK(file.at("tokenizer.ggml.model").to_string("") == "llama");
  CHECK(file.at("tokenizer.chat_template").to_string("") == "{{ x }}");
  const auto tokens = file.at("tokenizer.ggml.tokens").to_strings("");
  const auto types = file.at("tokenizer.ggml.token_type").to_ints("");
  REQUIRE(tokens.size() == 512);
  for (int32_t id = 0; id < 512; ++id) CHECK(tokens[id] == tokenizer->id_to_piece(id));
  CHECK(types[0] == 2);       // <unk>
  CHECK(types[1] == 3);       // <s>
  CHECK(types[3 + 10] == 6);  // <0x0A>
  CHECK(tokens[3 + 10] == "<0x0A>");
  CHECK(types[300] == 1);
  CHECK(file.at("tokenizer.ggml.scores").to_floats("").size() == 512);
  CHECK(integer("tokenizer.ggml.bos_token_id") == 1);
  CHECK(integer("tokenizer.ggml.eos_token_id") == 2);
  CHECK(file.at("tokenizer.ggml.add_bos_token").to_bool(""));
  CHECK(file.find("tokenizer.ggml.merges") == nullptr);
  CHECK(file.find_tensor("rope_freqs.weight") == nullptr);
}

TEST_CASE("GGUF export: Llama 3 rope scaling and a byte-level BPE tokenizer") {
  testing::ScratchDir dir("gguf_export_llama3");
  const auto tokenizer = data::load_tokenizer(kBpeTokenizer);
  models::LlamaConfig c = config_with_vocab(1024, true);
  c.rope_theta = 500000.0;
  c.rope_scaling = {.type = ops::RopeScaling::Type::llama3, .factor = 32.0, .original_max_position_embeddings = 64};
  models::Llama model(c, {.seed = 2});
  const auto file = export_file(model, *tokenizer, models::GgufFileType::f16, dir.file("m.gguf"));

  // Short wavelengths keep 1, long ones take the factor, those between are interpolated.
  const auto factors = file.dequantize(file.tensor_info("rope_freqs.weight")).to_vector<float>();
  REQUIRE(factors.size() == 4);
  for (size_t i = 0; i < factors.size(); ++i) {
    const double inv_freq = 1.0 / std::pow(500000.0, 2.0 * static_cast<double>(i) / 8.0);
    const double wavelen = 2.0 * M_PI / inv_freq;
    double want = 1.0;
    if (wavelen > 64.0) {
      want = 32.0;
    } else if (wavelen >= 16.0) {
      const double smooth = (64.0 / wavelen - 1.0) / 3.0;
      want = 1.0 / ((1.0 - smooth) / 32.0 + smooth);
    }
    CAPTURE(i);
    CHECK(factors[i] == doctest::Approx(want).epsilon(1e-5));
  }
  CHECK(factors.front() == 1.0f);
  CHECK(factors.back() == 32.0f);

  CHECK(file.at("tokenizer.ggml.model").to_string("") == "gpt2");
  CHECK(file.at("tokenizer.ggml.pre").to_string("") == "llama-bpe");
  CHECK(file.find("tokenizer.ggml.scores") == nullptr);
  const io::Json json = io::read_json_file(kBpeTokenizer);
  const io::Json& merges = json["model"]["merges"];
  const auto got = file.at("tokenizer.ggml.merges").to_strings("");
  REQUIRE(got.size() == merges.size());
  for (size_t i = 0; i < got.size(); ++i)
    CHECK(got[i] == merges[i][0].get<std::string>() + " " + merges[i][1].get<std::string>());
  const auto tokens = file.at("tokenizer.ggml.tokens").to_strings("");
  const auto types = file.at("tokenizer.ggml.token_type").to_ints("");
  // Padded to the model's 1024 embedding rows, as llama.cpp sizes the embedding from the token list.
  REQUIRE(tokens.size() == 1024);
  CHECK(tokenizer->vocab_size() == 1005);
  CHECK(tokens[1010] == "[PAD1010]");
  CHECK(types[1010] == 5);
  CHECK(tokens[1002] == "<|begin_of_text|>");
  CHECK(types[1002] == 3);
  CHECK(types[5] == 1);
  CHECK(file.at("tokenizer.ggml.bos_token_id").to_int("") == 1002);
  CHECK(file.find_tensor("output.weight") == nullptr);  // tied: llama.cpp reuses token_embd
}

TEST_CASE("GGUF export refuses what llama.cpp could not run") {
  testing::ScratchDir dir("gguf_export_errors");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  models::Llama small(config_with_vocab(100, false), {.seed = 1});
  CHECK(error_of([&] {
          export_file(small, *tokenizer, models::GgufFileType::f16, dir.file("a.gguf"));
        }).find("the tokenizer has 512 tokens, more than the model's vocab_size 100") != std::string::npos);
  models::Llama adapted(config_with_vocab(512, false), {.seed = 1});
  models::apply_lora(adapted, {.rank = 2, .alpha = 4, .targets = {"q_proj"}});
  CHECK(error_of([&] {
          export_file(adapted, *tokenizer, models::GgufFileType::f16, dir.file("a.gguf"));
        }).find("lora_A.weight has no place in llama.cpp's Llama (is an adapter still unmerged?)") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("a.gguf")));
}
