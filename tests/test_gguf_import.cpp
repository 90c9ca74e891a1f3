// GGUF import (docs/numerics.md §9): a model exported to GGUF and read back computes the same logits as the
// model itself for f32, and as its fake-quantized weights for q8_0 / q4_0; the config comes back from llama.cpp's
// metadata (Llama 3 rope scaling from rope_freqs.weight); the embedded tokenizer encodes like the original; and a
// file that is not a Llama qtune can run is refused with what is wrong.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/gguf_vocabulary.h"
#include "data/tokenizer.h"
#include "engine/autograd.h"
#include "engine/io/gguf_file.h"
#include "engine/io/gguf_writer.h"
#include "engine/numerics/ggml_blocks.h"
#include "models/gguf_export.h"
#include "models/gguf_import.h"
#include "models/quantized_checkpoint.h"
#include "ops/nn/linear.h"
#include "quant/frozen_ggml_linear.h"
#include "quant/qat.h"
#include "quant/qat_config.h"
#include "quant/qat_fake_quantize.h"
#include "tests/llama_fixtures.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

using namespace qtune;
using testing::error_of;

namespace {

const std::string kSpTokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp/tokenizer.model";
// Llama 2's normalizer settings (whitespace kept as written), which a GGUF "llama" vocabulary implies.
const std::string kSpLlama2Tokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/sp_bpe.model";
const std::string kBpeTokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/llama3_style.json";
const std::string kGpt2Tokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/gpt2_style.json";

const std::vector<std::string> kTexts = {
    "Hello world",
    "  two  spaces and\ttabs\n\nnew lines",
    "digits 1234567 and 3.14",
    "café, naïve, 東京 🙂",
    "<|begin_of_text|>special<|eot_id|> tokens",
    "",
    " leading space",
    "it's they'll we've",
};

void export_model(models::Llama& model, const data::Tokenizer& tokenizer, models::GgufFileType type,
                  const std::string& path) {
  models::save_gguf(model, path, {.type = type, .tokenizer = &tokenizer});
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

}  // namespace

TEST_CASE("GGUF import: f32 gives the model's logits bit for bit; q8_0 / q4_0 those of its fake-quantized weights") {
  testing::ScratchDir dir("gguf_import");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const bool tied : {true, false}) {
    models::LlamaConfig c = testing::aligned_llama_config(tied);
    c.vocab_size = 512;
    models::Llama model(c, {.seed = 7});
    const std::string path = dir.file("m.gguf");
    CAPTURE(tied);

    export_model(model, *tokenizer, models::GgufFileType::f32, path);
    const auto back = models::load_model(path);  // the dispatch every command uses
    CHECK(back->config().tie_word_embeddings == tied);
    CHECK(same_bits(testing::eval_logits(*back), testing::eval_logits(model)));

    for (const auto type : {models::GgufFileType::q8_0, models::GgufFileType::q4_0}) {
      CAPTURE(models::gguf_file_type_name(type));
      export_model(model, *tokenizer, type, path);
      models::Llama fq(c, {.seed = 7});
      {
        NoGradGuard no_grad;
        for (auto& [name, p] : fq.named_parameters()) {
          const io::GgmlType t = models::gguf_tensor_type(name, p.shape(), type, c);
          if (t == io::GgmlType::q4_0) p.copy_(quant::fake_quantize(p.detach(), quant::weight_spec(quant::Q4_0{})));
          if (t == io::GgmlType::q8_0) p.copy_(quant::fake_quantize(p.detach(), quant::weight_spec(quant::Q8_0{})));
        }
      }
      const auto imported = models::load_gguf_llama(path);
      CHECK(same_bits(testing::eval_logits(*imported), testing::eval_logits(fq)));
      CHECK_FALSE(same_bits(testing::eval_logits(*imported), testing::eval_logits(model)));
    }
  }
}

TEST_CASE("GGUF import: the config comes back, Llama 3 scaling included") {
  testing::ScratchDir dir("gguf_import_config");
  const auto tokenizer = data::load_tokenizer(kBpeTokenizer);
  struct Case {
    double theta;
    int64_t head_dim, heads, hidden;
    ops::RopeScaling scaling;
  };
  const Case cases[] = {
      {10000.0, 8, 4, 32, {}},
      {500.0,
       8,
       4,
       32,
       {.type = ops::RopeScaling::Type::llama3, .factor = 4.0, .original_max_position_embeddings = 16}},
      // Llama 3.2's scaling on a head of 64: several frequencies inside the band.
      {500000.0, 64, 2, 128, {.type = ops::RopeScaling::Type::llama3, .factor = 32.0}},
      {500000.0,
       64,
       2,
       128,
       {.type = ops::RopeScaling::Type::llama3,
        .factor = 8.0,
        .high_freq_factor = 2.0,
        .original_max_position_embeddings = 4096}},
  };
  for (const Case& k : cases) {
    models::LlamaConfig c = testing::aligned_llama_config(false);
    c.vocab_size = 1024;
    c.rope_theta = k.theta;
    c.head_dim = k.head_dim;
    c.num_attention_heads = k.heads;
    c.num_key_value_heads = 1;
    c.hidden_size = k.hidden;
    c.rope_scaling = k.scaling;
    c.bos_token_id = 1002;
    c.eos_token_ids = {1003};
    models::Llama model(c, {.seed = 1});
    export_model(model, *tokenizer, models::GgufFileType::f16, dir.file("c.gguf"));
    models::LlamaConfig got = models::llama_config_from_gguf(io::GgufFile::open(dir.file("c.gguf")));
    CAPTURE(k.theta);
    CAPTURE(k.scaling.factor);
    CHECK(got.rms_norm_eps == doctest::Approx(c.rms_norm_eps));
    CHECK(got.torch_dtype == "float16");
    got.rms_norm_eps = c.rms_norm_eps;
    got.torch_dtype = c.torch_dtype;
    CHECK(got == c);
    CHECK(got.rope_scaling.high_freq_factor == doctest::Approx(c.rope_scaling.high_freq_factor));
    CHECK(got.rope_scaling.original_max_position_embeddings == c.rope_scaling.original_max_position_embeddings);
  }
}

TEST_CASE("GGUF import: the embedded tokenizer encodes and decodes like the original") {
  testing::ScratchDir dir("gguf_import_tokenizer");
  for (const std::string& source : {kSpLlama2Tokenizer, kBpeTokenizer, kGpt2Tokenizer}) {
    CAPTURE(source);
    const auto original = data::load_tokenizer(source);
    models::LlamaConfig c = testing::aligned_llama_config(true);
    c.vocab_size = 1024;
    models::Llama model(c, {.seed = 1});
    export_model(model, *original, models::GgufFileType::f16, dir.file("t.gguf"));
    const auto back = data::load_tokenizer(dir.file("t.gguf"));
    CHECK(back->kind() == original->kind());
    CHECK(back->vocab_size() == 1024);  // padded to the model's embedding rows with unused tokens
    CHECK(back->bos_id() == original->bos_id());
    CHECK(back->eos_id() == original->eos_id());
    // Written out as files of its own (a run from a GGUF saves them into its checkpoints), it reads back the same.
    const std::string saved = dir.str("saved_" + back->kind());
    std::filesystem::create_directories(saved);
    back->save(saved);
    const auto again = data::load_tokenizer(saved);
    CHECK(again->vocab_size() == 1024);
    CHECK(again->bos_id() == original->bos_id());
    for (const std::string& text : kTexts) {
      CAPTURE(text);
      const auto ids = original->encode(text, true);
      CHECK(back->encode(text, true) == ids);
      CHECK(back->decode(ids) == original->decode(ids));
      CHECK(again->encode(text, true) == ids);
    }
  }
}

TEST_CASE("GGUF import refuses a file that is not a Llama qtune can run, naming what is wrong") {
  testing::ScratchDir dir("gguf_import_errors");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  models::LlamaConfig c = testing::aligned_llama_config(false);
  c.vocab_size = 512;
  models::Llama model(c, {.seed = 1});
  export_model(model, *tokenizer, models::GgufFileType::f32, dir.file("good.gguf"));
  const auto good = io::GgufFile::open(dir.file("good.gguf"));

  // The good file's metadata and tensors, with one change, written again.
  const auto rewrite = [&](const std::string& name, auto&& edit_metadata, auto&& keep_tensor) {
    io::GgufMetadata metadata = good.metadata();
    edit_metadata(metadata);
    std::vector<io::GgufTensorSpec> specs;
    std::vector<const io::GgufTensorInfo*> kept;
    for (const auto& t : good.tensors()) {
      if (!keep_tensor(t.name)) continue;
      specs.push_back({t.name, t.type, t.shape()});
      kept.push_back(&t);
    }
    io::GgufWriter out(dir.file(name), metadata, specs);
    for (const auto* t : kept) out.write(good.bytes(*t));
    out.commit();
    return dir.file(name);
  };
  const auto all = [](const std::string&) { return true; };
  const auto same = [](io::GgufMetadata&) {};
  const auto set = [](const std::string& key, io::GgufValue v) {
    return [key, v](io::GgufMetadata& m) {
      for (auto& [k, value] : m)
        if (k == key) value = v;
    };
  };

  CHECK(error_of([&] {
          models::load_gguf_llama(
              rewrite("arch.gguf", set("general.architecture", io::GgufValue::string("gemma")), all));
        }).find("general.architecture is 'gemma'; qtune runs Llama models only") != std::string::npos);
  CHECK(error_of([&] {
          models::load_gguf_llama(
              rewrite("missing.gguf", same, [](const std::string& n) { return n != "blk.1.ffn_up.weight"; }));
        }).find("tensor blk.1.ffn_up.weight (model.layers.1.mlp.up_proj.weight) is missing") != std::string::npos);
  CHECK(error_of([&] {
          models::load_gguf_llama(rewrite("layers.gguf", set("llama.block_count", io::GgufValue::u32(1)), all));
        }).find("tensor blk.1.attn_q.weight is not part of a Llama") != std::string::npos);
  CHECK(error_of([&] {
          models::load_gguf_llama(rewrite("ff.gguf", set("llama.feed_forward_length", io::GgufValue::u32(32)), all));
        }).find("tensor blk.0.ffn_gate.weight has shape [64, 32], the model expects [32, 32]") != std::string::npos);
  CHECK(error_of([&] {
          models::load_gguf_llama(rewrite("rot.gguf", set("llama.rope.dimension_count", io::GgufValue::u32(4)), all));
        }).find("llama.rope.dimension_count is not the head size 8 (partial rotary embeddings are not supported)") !=
        std::string::npos);
  CHECK(error_of([&] {
          data::load_gguf_tokenizer(
              io::GgufFile::open(rewrite("pre.gguf", set("tokenizer.ggml.model", io::GgufValue::string("bert")), all)));
        }).find("tokenizer.ggml.model 'bert' is not one qtune reads") != std::string::npos);
}

TEST_CASE("compute_as_llama_cpp: quantized linears, and a quantized tied head, take Q8_0-block inputs") {
  testing::ScratchDir dir("gguf_import_llama_cpp");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    models::LlamaConfig c = testing::aligned_llama_config(tied);
    c.vocab_size = 512;
    models::Llama model(c, {.seed = 3});
    export_model(model, *tokenizer, models::GgufFileType::q4_0, dir.file("m.gguf"));
    const auto file = io::GgufFile::open(dir.file("m.gguf"));
    const auto imported = models::load_gguf_llama(dir.file("m.gguf"));
    const Tensor plain = testing::eval_logits(*imported);
    CHECK(models::compute_as_llama_cpp(*imported, file) == 15);  // 14 projections (Q4_0) and the head (Q8_0)
    const Tensor numerics = testing::eval_logits(*imported);
    CHECK_FALSE(same_bits(plain, numerics));
    CHECK(testing::relative_error(numerics, plain) < 0.05);
    if (tied) continue;  // a tied head has no module a QAT pass could swap
    // The same numerics from the QAT passes: ggml_q4_0 on the projections, ggml_q8_0 on the head.
    const auto by_hand = models::load_gguf_llama(dir.file("m.gguf"));
    CHECK(quant::quantize_(*by_hand, quant::QATConfig{quant::GgmlQ4_0{}, quant::QATStep::Prepare}) == 14);
    CHECK(quant::quantize_(*by_hand, quant::QATConfig{quant::GgmlQ8_0{}, quant::QATStep::Prepare},
                           [](const Module&, std::string_view fqn) { return fqn == "lm_head"; }) == 1);
    CHECK(same_bits(testing::eval_logits(*by_hand), numerics));
  }
}

TEST_CASE("load_gguf_llama keep_quantized: quantized linears stay in the file's blocks and compute the same") {
  testing::ScratchDir dir("gguf_import_keep");
  const auto tokenizer = data::load_tokenizer(kSpTokenizer);
  for (const auto type : {models::GgufFileType::q4_0, models::GgufFileType::q4_k_m, models::GgufFileType::f16}) {
    for (const bool tied : {false, true}) {
      CAPTURE(models::gguf_file_type_name(type));
      CAPTURE(tied);
      models::LlamaConfig c = testing::aligned_llama_config(tied);
      c.vocab_size = 512;
      models::Llama model(c, {.seed = 3});
      export_model(model, *tokenizer, type, dir.file("m.gguf"));
      const bool quantized = type != models::GgufFileType::f16;
      CHECK(models::gguf_has_quantized_linears(io::GgufFile::open(dir.file("m.gguf"))) == quantized);
      const auto dense = models::load_gguf_llama(dir.file("m.gguf"));
      const auto kept = models::load_gguf_llama(dir.file("m.gguf"), {}, true);
      int64_t frozen = 0, params = 0;
      for (const auto& [fqn, m] : kept->named_modules()) frozen += dynamic_cast<quant::FrozenGgmlLinear*>(m) != nullptr;
      for (const auto& p : kept->parameters()) params += p.numel();
      // 14 projections, and the untied head, in blocks; the parameters left are the embedding and the norms.
      CHECK(frozen == (quantized ? 14 + (tied ? 0 : 1) : 0));
      if (quantized) CHECK(params == 512 * 32 + 5 * 32);
      // The same values as the dequantized load (the q/k rows moved back whole), so the same logits bit for bit.
      CHECK(same_bits(testing::eval_logits(*kept), testing::eval_logits(*dense)));
    }
  }
}

TEST_CASE("FrozenGgmlLinear: the input's gradient is the dense linear's; the weight is not trained") {
  const std::vector<float> w = testing::random_f64({8, 64}, 11).to(DType::f32).to_vector<float>();
  std::vector<numerics::BlockQ4_0> q4(8 * 2);  // rows of 64 inputs: two Q4_0 blocks each
  numerics::quantize_row_q4_0_ref(w.data(), q4.data(), 8 * 64);
  Tensor bytes = Tensor::empty({8, 36}, DType::u8);
  std::memcpy(bytes.data_ptr(), q4.data(), 8 * 36);
  quant::FrozenGgmlLinear frozen(io::GgmlType::q4_0, bytes, 64);
  CHECK(frozen.parameters().empty());
  nn::Linear dense(64, 8, {.bias = false});
  {
    NoGradGuard no_grad;
    dense.weight().copy_(frozen.dequantize());
  }
  dense.weight().requires_grad_(false);
  const Tensor x1 = testing::random_f64({3, 64}, 12).to(DType::f32).requires_grad_(true);
  const Tensor x2 = x1.detach().clone().requires_grad_(true);
  const Tensor gy = testing::random_f64({3, 8}, 13).to(DType::f32);
  const Tensor y1 = frozen.forward(x1), y2 = dense.forward(x2);
  CHECK(same_bits(y1, y2));
  y1.backward(gy);
  y2.backward(gy);
  CHECK(same_bits(x1.grad(), x2.grad()));
  CHECK(error_of([&] {
          quant::FrozenGgmlLinear(io::GgmlType::q4_0, bytes, 96);
        }).find("FrozenGgmlLinear: blocks u8 [8, 36] are not [out, 54] u8 for 96 inputs of Q4_0") != std::string::npos);
}
