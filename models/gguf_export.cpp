#include "models/gguf_export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "data/gguf_vocabulary.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/gguf_writer.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/ggml_blocks.h"
#include "engine/numerics/ggml_k_quantize.h"
#include "engine/numerics/rope.h"
#include "models/gguf_layout.h"

namespace qtune::models {
namespace {

using io::GgmlType;
using io::GgufValue;

bool is_decoder_projection(std::string_view hf_name) {
  return hf_name.starts_with("model.layers.") && hf_name.ends_with("_proj.weight");
}

io::GgufMetadata llama_metadata(const LlamaConfig& c, const GgufExportOptions& options) {
  io::GgufMetadata m;
  auto add = [&](const char* key, GgufValue value) { m.emplace_back(key, std::move(value)); };
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  add("general.architecture", GgufValue::string("llama"));
  add("general.type", GgufValue::string("model"));
  if (!options.name.empty()) add("general.name", GgufValue::string(options.name));
  add("llama.block_count", u32(c.num_hidden_layers));
  add("llama.context_length", u32(c.max_position_embeddings));
  add("llama.embedding_length", u32(c.hidden_size));
  add("llama.feed_forward_length", u32(c.intermediate_size));
  add("llama.attention.head_count", u32(c.num_attention_heads));
  add("llama.attention.head_count_kv", u32(c.num_key_value_heads));
  add("llama.rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  add("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
  if (c.resolved_head_dim() != c.hidden_size / c.num_attention_heads) {
    add("llama.attention.key_length", u32(c.resolved_head_dim()));
    add("llama.attention.value_length", u32(c.resolved_head_dim()));
  }
  add("llama.vocab_size", u32(c.vocab_size));
  add("llama.rope.dimension_count", u32(c.resolved_head_dim()));
  return m;
}

// The factors llama.cpp divides each RoPE frequency by for Llama 3 scaling, computed as llama.cpp's converter
// does (in f32): 1 for short wavelengths, `factor` for long ones, and between them the ratio of the default
// frequency to the scaled one.
Tensor llama3_rope_factors(const LlamaConfig& c) {
  const ops::RopeScaling& s = c.rope_scaling;
  const int64_t half = c.resolved_head_dim() / 2;
  Tensor factors = Tensor::empty({half}, DType::f32);
  float* out = factors.data<float>();
  for (int64_t i = 0; i < half; ++i) {
    out[i] = numerics::rope_llama3_divisor(
        numerics::rope_default_inv_freq<float>(i, c.resolved_head_dim(), c.rope_theta), s.factor, s.low_freq_factor,
        s.high_freq_factor, static_cast<double>(s.original_max_position_embeddings));
  }
  return factors;
}

// w: contiguous f32 on the CPU, [rows, k] (or [k]) -> the bytes of `type`.
std::vector<std::byte> encode(const Tensor& w, GgmlType type) {
  const int64_t n = w.numel();
  const float* x = w.data<float>();
  std::vector<std::byte> out(static_cast<size_t>(io::ggml_row_bytes(type, static_cast<uint64_t>(n))));
  auto put16 = [&](auto convert) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = convert(x[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  };
  switch (type) {
    case GgmlType::f32:
      std::memcpy(out.data(), x, out.size());
      break;
    case GgmlType::f16:
      put16(numerics::f32_to_f16_bits);
      break;
    case GgmlType::bf16:
      put16(numerics::f32_to_bf16_bits);
      break;
    case GgmlType::q8_0:
      numerics::quantize_row_q8_0_ref(x, reinterpret_cast<numerics::BlockQ8_0*>(out.data()), n);
      break;
    case GgmlType::q4_0:
      numerics::quantize_row_q4_0_ref(x, reinterpret_cast<numerics::BlockQ4_0*>(out.data()), n);
      break;
    case GgmlType::q5_0:
      numerics::quantize_row_q5_0_ref(x, reinterpret_cast<numerics::BlockQ5_0*>(out.data()), n);
      break;
    case GgmlType::q4_k:
      numerics::quantize_row_q4_K_ref(x, reinterpret_cast<numerics::BlockQ4_K*>(out.data()), n);
      break;
    case GgmlType::q5_k:
      numerics::quantize_row_q5_K_ref(x, reinterpret_cast<numerics::BlockQ5_K*>(out.data()), n);
      break;
    case GgmlType::q6_k:
      numerics::quantize_row_q6_K_ref(x, reinterpret_cast<numerics::BlockQ6_K*>(out.data()), n);
      break;
    default:
      QTUNE_FAIL("GGUF export: no encoder for ", io::ggml_type_name(type));
  }
  return out;
}

// The types llama-quantize demotes a type to when a row is not a whole number of its blocks, then F16.
GgmlType fit_rows(GgmlType type, int64_t cols) {
  const auto fits = [&](GgmlType t) { return cols % io::ggml_type_layout(t).block == 0; };
  if (fits(type)) return type;
  GgmlType fallback = GgmlType::f16;
  if (type == GgmlType::q4_k) fallback = GgmlType::q5_0;
  if (type == GgmlType::q6_k) fallback = GgmlType::q8_0;
  QTUNE_CHECK(type != GgmlType::q5_k, "GGUF export: rows of ", cols,
              " weights are not whole Q5_K super-blocks; llama-quantize would write Q5_1, which qtune does not");
  return fits(fallback) ? fallback : GgmlType::f16;
}

// llama-quantize's Q4_K_M mix for a Llama without an importance matrix: Q4_K, except Q6_K for the output head (the
// tied embedding included; Q8_0 when its rows are not whole super-blocks) and for attn_v and ffn_down in the
// first and last eighth of the layers and every third layer between; a 70B model (80 layers, grouped kv heads)
// takes Q5_K for its other attn_v. The layer index is llama-quantize's count of attn_v / ffn_down tensors seen
// so far, which is the layer number because save_gguf writes blocks in numeric order.
GgmlType q4_k_m_type(std::string_view hf_name, int64_t cols, const LlamaConfig& c) {
  const int64_t layers = c.num_hidden_layers, layer = layer_index(hf_name).value_or(-1);
  const auto more_bits = [&] { return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2; };
  const bool head = hf_name == "lm_head.weight" || (c.tie_word_embeddings && hf_name == "model.embed_tokens.weight");
  GgmlType t = GgmlType::q4_k;
  if (head) {
    t = cols % numerics::kGgmlSuperBlock != 0 ? GgmlType::q8_0 : GgmlType::q6_k;
  } else if (hf_name.ends_with(".self_attn.v_proj.weight")) {
    if (more_bits()) t = GgmlType::q6_k;
    if (t == GgmlType::q4_k && layers == 80 && c.num_attention_heads != c.num_key_value_heads) t = GgmlType::q5_k;
  } else if (hf_name.ends_with(".mlp.down_proj.weight")) {
    if (more_bits()) t = GgmlType::q6_k;
  }
  return fit_rows(t, cols);
}

// llama.cpp's loader order, which llama-quantize writes in: tensors outside the blocks first, then by block
// number; by name within each.
bool llama_cpp_order(const io::GgufTensorSpec& a, const io::GgufTensorSpec& b) {
  const int64_t ba = layer_index(a.name).value_or(-1), bb = layer_index(b.name).value_or(-1);
  return ba != bb ? ba < bb : a.name < b.name;
}

}  // namespace

std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name) {
  for (const GgufFileType t : {GgufFileType::f32, GgufFileType::f16, GgufFileType::bf16, GgufFileType::q8_0,
                               GgufFileType::q4_0, GgufFileType::q4_k_m})
    if (gguf_file_type_name(t) == name) return t;
  return std::nullopt;
}

std::string_view gguf_file_type_name(GgufFileType t) {
  switch (t) {
    case GgufFileType::f32:
      return "f32";
    case GgufFileType::f16:
      return "f16";
    case GgufFileType::bf16:
      return "bf16";
    case GgufFileType::q8_0:
      return "q8_0";
    case GgufFileType::q4_0:
      return "q4_0";
    case GgufFileType::q4_k_m:
      return "q4_k_m";
  }
  return "?";
}

GgmlType gguf_tensor_type(std::string_view hf_name, const Shape& shape, GgufFileType type, const LlamaConfig& config) {
  if (shape.size() != 2) return GgmlType::f32;
  switch (type) {
    case GgufFileType::f32:
      return GgmlType::f32;
    case GgufFileType::f16:
      return GgmlType::f16;
    case GgufFileType::bf16:
      return GgmlType::bf16;
    case GgufFileType::q8_0:
      return fit_rows(GgmlType::q8_0, shape[1]);
    case GgufFileType::q4_0:
      return fit_rows(is_decoder_projection(hf_name) ? GgmlType::q4_0 : GgmlType::q8_0, shape[1]);
    case GgufFileType::q4_k_m:
      return q4_k_m_type(hf_name, shape[1], config);
  }
  return GgmlType::f32;
}

void save_gguf(Llama& model, const std::string& path, const GgufExportOptions& options) {
  QTUNE_CHECK(options.tokenizer != nullptr, "GGUF export to ", path, ": a tokenizer is required");
  const LlamaConfig& c = model.config();
  io::GgufMetadata metadata = llama_metadata(c, options);
  data::append_gguf_tokenizer(metadata, *options.tokenizer, options.chat_template, c.vocab_size);
  metadata.emplace_back("general.quantization_version", GgufValue::u32(2));
  metadata.emplace_back("general.file_type", GgufValue::u32(static_cast<uint32_t>(options.type)));

  struct Item {
    std::string hf_name;
    Tensor parameter;  // undefined for rope_freqs
  };
  std::vector<io::GgufTensorSpec> specs;
  std::vector<Item> items;
  const bool llama3 = c.rope_scaling.type == ops::RopeScaling::Type::llama3;
  if (llama3) {
    specs.push_back({"rope_freqs.weight", GgmlType::f32, {c.resolved_head_dim() / 2}});
    items.push_back({"", Tensor()});
  }
  for (auto& [name, p] : model.named_parameters()) {
    const auto gguf_name = gguf_tensor_name(name);
    QTUNE_CHECK(gguf_name.has_value(), "GGUF export to ", path, ": parameter ", name,
                " has no place in llama.cpp's Llama (is an adapter still unmerged?)");
    specs.push_back({*gguf_name, gguf_tensor_type(name, p.shape(), options.type, c), p.shape()});
    items.push_back({name, p});
  }
  std::vector<size_t> order(specs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return llama_cpp_order(specs[a], specs[b]); });
  std::vector<io::GgufTensorSpec> sorted_specs;
  std::vector<Item> sorted_items;
  for (const size_t i : order) {
    sorted_specs.push_back(std::move(specs[i]));
    sorted_items.push_back(std::move(items[i]));
  }
  specs = std::move(sorted_specs);
  items = std::move(sorted_items);

  io::GgufWriter out(path, metadata, specs);
  NoGradGuard no_grad;
  for (size_t i = 0; i < items.size(); ++i) {
    Tensor w = items[i].parameter.defined()
                   ? read_tensor(options.read, items[i].parameter).detach().to(Device::cpu()).to(DType::f32)
                   : llama3_rope_factors(c);
    if (const int64_t heads = gguf_rope_heads(items[i].hf_name, c.num_attention_heads, c.num_key_value_heads))
      w = rope_rows_to_gguf(w, heads);
    w = w.contiguous();
    const float* values = w.data<float>();
    for (int64_t j = 0; j < w.numel(); ++j)
      QTUNE_CHECK(std::isfinite(values[j]), "GGUF export to ", path, ": ", specs[i].name, " holds ", values[j],
                  " at element ", j, " (llama.cpp refuses weights that are not finite)");
    const std::vector<std::byte> bytes = encode(w, specs[i].type);
    out.write(bytes);
  }
  out.commit();
}

}  // namespace qtune::models
