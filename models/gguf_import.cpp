#include "models/gguf_import.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/numerics/rope.h"
#include "models/gguf_layout.h"
#include "ops/nn/linear.h"
#include "quant/frozen_ggml_linear.h"
#include "quant/module_swap.h"

namespace qtune::models {
namespace {

// The file's tensor for the linear `fqn` ("model.layers.0.self_attn.q_proj", "lm_head"); null when it has none.
const io::GgufTensorInfo* linear_tensor(const io::GgufFile& file, std::string_view fqn) {
  const auto name = gguf_tensor_name(std::string(fqn) + ".weight");
  return name ? file.find_tensor(*name) : nullptr;
}

// A 2-D tensor in one of ggml's block types.
bool is_quantized(const io::GgufTensorInfo* t) { return t && t->dims.size() == 2 && io::is_quantized_type(t->type); }

// A linear's weight load_gguf_llama's keep_quantized keeps in the file's blocks (the embedding table is looked up,
// so it is dequantized even when tied to the head).
bool is_kept_linear(const io::GgufTensorInfo& t) { return is_quantized(&t) && t.name != "token_embd.weight"; }

// Bytes a parameter takes once loaded, on average: 4 (f32), except the blocks keep_quantized keeps.
double loaded_bytes_per_parameter(const io::GgufFile& file, bool keep_quantized) {
  double bytes = 0, elements = 0;
  for (const auto& t : file.tensors()) {
    elements += static_cast<double>(t.elements());
    bytes += keep_quantized && is_kept_linear(t) ? static_cast<double>(t.nbytes) : 4.0 * t.elements();
  }
  return elements > 0 ? bytes / elements : 4.0;
}

// The file's tensor `t` as a FrozenGgmlLinear of `in` inputs, its rows moved back to Hugging Face's order whole
// (q and k over `heads`; 0: as stored).
std::shared_ptr<quant::FrozenGgmlLinear> frozen_linear(const io::GgufFile& file, const io::GgufTensorInfo& t,
                                                       int64_t in, int64_t heads) {
  const auto bytes = file.bytes(t);
  const int64_t out = t.shape()[0], row_bytes = static_cast<int64_t>(bytes.size()) / out;
  Tensor blocks = Tensor::empty({out, row_bytes}, DType::u8);
  std::memcpy(blocks.data_ptr(), bytes.data(), bytes.size());
  if (heads) blocks = rope_rows_from_gguf(blocks, heads);  // whole rows of blocks: the codes stay as they are
  file.release(t);
  return std::make_shared<quant::FrozenGgmlLinear>(t.type, blocks, in);
}

// Swaps every linear of `model` whose weight `file` stores in a block type for a FrozenGgmlLinear over those
// blocks, rounding its inputs as llama.cpp does when `llama_cpp_inputs`. Returns how many were swapped.
int64_t swap_quantized_linears(Llama& model, const io::GgufFile& file, bool llama_cpp_inputs) {
  const LlamaConfig& c = model.config();
  return quant::swap_modules(
      model,
      [&](const Module& m, std::string_view fqn) {
        return dynamic_cast<const nn::Linear*>(&m) != nullptr && is_quantized(linear_tensor(file, fqn));
      },
      [&](Module& m, std::string_view fqn) -> ModulePtr {
        auto linear =
            frozen_linear(file, *linear_tensor(file, fqn), static_cast<nn::Linear&>(m).in_features(),
                          gguf_rope_heads(std::string(fqn) + ".weight", c.num_attention_heads, c.num_key_value_heads));
        linear->set_llama_cpp_inputs(llama_cpp_inputs);
        return linear;
      });
}

int64_t required_int(const io::GgufFile& file, const std::string& key) {
  const io::GgufValue* v = file.find(key);
  QTUNE_CHECK(v != nullptr, file.path(), ": metadata key ", key, " is missing");
  const int64_t n = v->to_int(key);
  QTUNE_CHECK(n > 0, file.path(), ": metadata key ", key, " = ", n, " must be positive");
  return n;
}

std::optional<double> optional_number(const io::GgufFile& file, const std::string& key) {
  const io::GgufValue* v = file.find(key);
  return v ? std::optional<double>(v->to_double(key)) : std::nullopt;
}

// Whether Llama 3 scaling `s` gives exactly (to f32 precision) the divisors `factors`.
bool reproduces(const ops::RopeScaling& s, const std::vector<float>& factors, const LlamaConfig& c) {
  for (size_t i = 0; i < factors.size(); ++i) {
    const float inv_freq =
        numerics::rope_default_inv_freq<float>(static_cast<int64_t>(i), c.resolved_head_dim(), c.rope_theta);
    const float want = numerics::rope_llama3_divisor(inv_freq, s.factor, s.low_freq_factor, s.high_freq_factor,
                                                     static_cast<double>(s.original_max_position_embeddings));
    if (!(std::fabs(want - factors[i]) <= 1e-5f * factors[i])) return false;
  }
  return true;
}

// Llama 3 scaling whose divisors (rope_llama3_divisor) reproduce `factors`. The low frequency factor is taken as
// 1: the divisors depend on the band only through two numbers. Within the band the reciprocal divisor is linear
// in 1 / wavelength, so two band frequencies give the high factor and the original context; with one, the high
// factor is the first of the usual ones that reproduces every divisor; with none, the original context is.
ops::RopeScaling fit_llama3(const std::vector<float>& factors, const LlamaConfig& c, const std::string& where) {
  ops::RopeScaling s;
  s.type = ops::RopeScaling::Type::llama3;
  s.factor = *std::max_element(factors.begin(), factors.end());
  s.low_freq_factor = 1.0;
  QTUNE_CHECK(s.factor >= 1.0, where, ": rope_freqs.weight holds divisors below 1, which Llama 3 scaling never has");
  std::vector<double> inv_wavelen, smooth;
  for (size_t i = 0; i < factors.size(); ++i) {
    const double f = factors[i];
    if (f <= 1.0 + 1e-6 || f >= s.factor * (1.0 - 1e-6)) continue;
    const double inv_freq =
        numerics::rope_default_inv_freq<float>(static_cast<int64_t>(i), c.resolved_head_dim(), c.rope_theta);
    inv_wavelen.push_back(inv_freq / (2.0 * M_PI));
    smooth.push_back((1.0 / f - 1.0 / s.factor) / (1.0 - 1.0 / s.factor));
  }
  const auto nice = [](double x) { return std::round(x * 1000.0) / 1000.0; };
  std::vector<std::pair<double, double>> candidates;  // (high factor, original context)
  if (inv_wavelen.size() >= 2) {
    // smooth = k / wavelength + b, with k = original / (high - 1) and b = -1 / (high - 1).
    const size_t a = 0, z = inv_wavelen.size() - 1;
    const double k = (smooth[z] - smooth[a]) / (inv_wavelen[z] - inv_wavelen[a]);
    const double b = smooth[a] - k * inv_wavelen[a];
    if (b < 0.0) candidates.emplace_back(nice(1.0 - 1.0 / b), k / -b);
  } else {
    for (const double high : {4.0, 2.0, 8.0, 3.0, 1.5, 6.0, 16.0}) {
      if (inv_wavelen.size() == 1) {
        candidates.emplace_back(high, (smooth[0] * (high - 1.0) + 1.0) / inv_wavelen[0]);
      } else {
        for (double original = 16.0; original <= 1048576.0; original *= 2.0) candidates.emplace_back(high, original);
      }
    }
  }
  for (const auto& [high, original] : candidates) {
    s.high_freq_factor = high;
    s.original_max_position_embeddings = std::llround(original);
    if (reproduces(s, factors, c)) return s;
  }
  QTUNE_FAIL(where, ": rope_freqs.weight (", factors.size(), " divisors up to ", s.factor,
             ") is not Llama 3 scaling of any band qtune can find");
}

}  // namespace

LlamaConfig llama_config_from_gguf(const io::GgufFile& file) {
  const std::string& where = file.path();
  const std::string arch = file.at("general.architecture").to_string("general.architecture");
  QTUNE_CHECK(arch == "llama", where, ": general.architecture is '", arch, "'; qtune runs Llama models only");
  LlamaConfig c;
  c.num_hidden_layers = required_int(file, "llama.block_count");
  c.hidden_size = required_int(file, "llama.embedding_length");
  c.intermediate_size = required_int(file, "llama.feed_forward_length");
  c.num_attention_heads = required_int(file, "llama.attention.head_count");
  c.num_key_value_heads = file.find("llama.attention.head_count_kv")
                              ? required_int(file, "llama.attention.head_count_kv")
                              : c.num_attention_heads;
  c.max_position_embeddings = required_int(file, "llama.context_length");
  c.rms_norm_eps = optional_number(file, "llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = optional_number(file, "llama.rope.freq_base").value_or(10000.0);
  // llama.cpp stores these two as f32: the config keeps the value the file's f32 stands for.
  c.rms_norm_eps = static_cast<float>(c.rms_norm_eps);
  c.rope_theta = static_cast<float>(c.rope_theta);
  if (file.find("llama.attention.key_length")) {
    c.head_dim = required_int(file, "llama.attention.key_length");
    QTUNE_CHECK(
        !file.find("llama.attention.value_length") || required_int(file, "llama.attention.value_length") == c.head_dim,
        where, ": llama.attention.value_length differs from key_length (qtune's Llama has one head size)");
  }
  if (file.find("llama.rope.dimension_count"))
    QTUNE_CHECK(required_int(file, "llama.rope.dimension_count") == c.resolved_head_dim(), where,
                ": llama.rope.dimension_count is not the head size ", c.resolved_head_dim(),
                " (partial rotary embeddings are not supported)");
  if (const io::GgufValue* type = file.find("llama.rope.scaling.type")) {
    const std::string t = type->to_string("llama.rope.scaling.type");
    QTUNE_CHECK(t == "none", where, ": llama.rope.scaling.type '", t, "' is not supported (Llama 3 scaling is read ",
                "from rope_freqs.weight)");
  }
  const io::GgufTensorInfo* embedding = file.find_tensor("token_embd.weight");
  QTUNE_CHECK(embedding != nullptr, where, ": no token_embd.weight tensor");
  c.vocab_size = file.find("llama.vocab_size") ? required_int(file, "llama.vocab_size") : embedding->shape()[0];
  c.tie_word_embeddings = file.find_tensor("output.weight") == nullptr;
  const auto id = [&](const char* key) -> std::optional<int32_t> {
    const io::GgufValue* v = file.find(key);
    return v ? std::optional<int32_t>(static_cast<int32_t>(v->to_int(key))) : std::nullopt;
  };
  c.bos_token_id = id("tokenizer.ggml.bos_token_id").value_or(-1);
  c.eos_token_ids.clear();
  if (const auto eos = id("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*eos);
  const int64_t file_type = file.find("general.file_type") ? file.at("general.file_type").to_int("") : 1;
  c.torch_dtype = file_type == 0 ? "float32" : file_type == 32 ? "bfloat16" : "float16";
  if (const io::GgufTensorInfo* freqs = file.find_tensor("rope_freqs.weight")) {
    QTUNE_CHECK(freqs->elements() == c.resolved_head_dim() / 2, where, ": rope_freqs.weight has ", freqs->elements(),
                " factors for a head size of ", c.resolved_head_dim());
    c.rope_scaling = fit_llama3(file.dequantize(*freqs).to_vector<float>(), c, where);
  }
  c.validate();
  return c;
}

bool gguf_has_quantized_linears(const io::GgufFile& file) {
  for (const auto& t : file.tensors())
    if (is_kept_linear(t)) return true;
  return false;
}

std::shared_ptr<Llama> load_gguf_llama(const std::string& path, const LoadOptions& options, bool keep_quantized) {
  const auto file = io::GgufFile::open(path);
  const LlamaConfig config = llama_config_from_gguf(file);
  check_fits_memory(config, loaded_bytes_per_parameter(file, keep_quantized), path);
  std::shared_ptr<Llama> model;
  {
    SkipInitGuard skip;  // every parameter is filled from the file below
    model = std::make_shared<Llama>(config, llama_options(options));
  }
  std::vector<std::string> problems;
  std::set<std::string> used = {"rope_freqs.weight"};
  for (const auto& [name, p] : model->named_parameters()) {
    const std::string gguf_name = *gguf_tensor_name(name);
    const io::GgufTensorInfo* t = file.find_tensor(gguf_name);
    if (!t) {
      problems.push_back("tensor " + gguf_name + " (" + name + ") is missing");
      continue;
    }
    used.insert(gguf_name);
    if (t->shape() != p.shape()) {
      problems.push_back("tensor " + gguf_name + " has shape " + shape_str(t->shape()) + ", the model expects " +
                         shape_str(p.shape()));
      continue;
    }
    if (!io::GgufFile::can_dequantize(t->type))
      problems.push_back("tensor " + gguf_name + " is " + io::ggml_type_name(t->type) +
                         ", which qtune cannot dequantize (F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q5_K, Q6_K)");
  }
  for (const auto& t : file.tensors())
    if (!used.count(t.name)) problems.push_back("tensor " + t.name + " is not part of a Llama");
  if (!problems.empty()) {
    std::string all;
    for (const std::string& p : problems) all += "\n  " + p;
    QTUNE_FAIL(path, ": ", problems.size(), " problem(s) with the tensors:", all);
  }
  NoGradGuard no_grad;
  // Swapped before anything is filled: the skipped-init weights they replace were never written to.
  if (keep_quantized) swap_quantized_linears(*model, file, false);
  for (const auto& [name, p] : model->named_parameters()) {
    const io::GgufTensorInfo& t = file.tensor_info(*gguf_tensor_name(name));
    Tensor w = file.dequantize(t);
    if (const int64_t heads = gguf_rope_heads(name, config.num_attention_heads, config.num_key_value_heads))
      w = rope_rows_from_gguf(w, heads);
    p.detach().copy_(w);
    file.release(t);
  }
  return model;
}

int64_t compute_as_llama_cpp(Llama& model, const io::GgufFile& file) {
  QTUNE_CHECK(model.options().device.is_cpu(),
              "--as-llama-cpp computes on the CPU (llama.cpp's CPU numerics); the model is on ",
              model.options().device.str(), ": drop --device");
  int64_t swapped = swap_quantized_linears(model, file, true);
  // A tied head is the embedding table: llama.cpp multiplies by token_embd in its stored type. An unregistered
  // head over the file's blocks does that here (the embedding keeps its dequantized parameter for the lookup).
  const io::GgufTensorInfo* embedding = file.find_tensor("token_embd.weight");
  if (!model.lm_head && is_quantized(embedding)) {
    auto head = frozen_linear(file, *embedding, model.config().hidden_size, 0);
    head->set_llama_cpp_inputs(true);
    model.lm_head = head;
    ++swapped;
  }
  return swapped;
}

}  // namespace qtune::models
