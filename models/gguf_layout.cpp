#include "models/gguf_layout.h"

#include <array>
#include <charconv>
#include <utility>

#include "engine/check.h"

namespace qtune::models {
namespace {

// Per-layer tensors, Hugging Face's suffix after "model.layers.N." and llama.cpp's after "blk.N.".
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kLayerNames = {{
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
}};

constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kModelNames = {{
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
}};

// "<prefix><N>.<rest>" -> (N, rest), for a decimal N without a sign or leading zeros.
std::optional<std::pair<std::string, std::string_view>> split_layer(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || (dot > 1 && name[0] == '0')) return std::nullopt;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + dot, n);
  if (ec != std::errc() || end != name.data() + dot) return std::nullopt;
  return std::pair{std::string(name.substr(0, dot)), name.substr(dot + 1)};
}

template <bool kToGguf>
std::optional<std::string> rename(std::string_view name) {
  for (const auto& [hf, gguf] : kModelNames)
    if (name == (kToGguf ? hf : gguf)) return std::string(kToGguf ? gguf : hf);
  const auto layer = split_layer(name, kToGguf ? "model.layers." : "blk.");
  if (!layer) return std::nullopt;
  for (const auto& [hf, gguf] : kLayerNames)
    if (layer->second == (kToGguf ? hf : gguf))
      return (kToGguf ? "blk." : "model.layers.") + layer->first + "." + std::string(kToGguf ? gguf : hf);
  return std::nullopt;
}

Tensor swap_row_halves(const Tensor& w, int64_t heads, bool to_gguf) {
  QTUNE_CHECK(w.dim() == 2 && heads > 0 && w.size(0) % (2 * heads) == 0, "RoPE row permutation: weight ",
              shape_str(w.shape()), " does not split into ", heads, " heads of an even number of rows");
  const int64_t half = w.size(0) / heads / 2, in = w.size(1);
  const Shape from = to_gguf ? Shape{heads, 2, half, in} : Shape{heads, half, 2, in};
  return w.contiguous().reshape(from).transpose(1, 2).contiguous().reshape(w.shape());
}

}  // namespace

std::optional<int64_t> layer_index(std::string_view name) {
  auto layer = split_layer(name, "model.layers.");
  if (!layer) layer = split_layer(name, "blk.");
  if (!layer) return std::nullopt;
  return std::stoll(layer->first);  // split_layer checked the digits
}

std::optional<std::string> gguf_tensor_name(std::string_view hf_name) { return rename<true>(hf_name); }
std::optional<std::string> hf_tensor_name(std::string_view gguf_name) { return rename<false>(gguf_name); }

int64_t gguf_rope_heads(std::string_view hf_name, int64_t num_attention_heads, int64_t num_key_value_heads) {
  if (hf_name.ends_with(".self_attn.q_proj.weight")) return num_attention_heads;
  if (hf_name.ends_with(".self_attn.k_proj.weight")) return num_key_value_heads;
  return 0;
}

Tensor rope_rows_to_gguf(const Tensor& w, int64_t heads) { return swap_row_halves(w, heads, true); }
Tensor rope_rows_from_gguf(const Tensor& w, int64_t heads) { return swap_row_halves(w, heads, false); }

}  // namespace qtune::models
