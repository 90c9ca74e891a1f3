#include "models/quantize_model.h"

#include <array>
#include <memory>
#include <string>

#include "engine/check.h"
#include "ops/nn/embedding.h"
#include "quant/module_swap.h"
#include "quant/quantized_embedding.h"

namespace qtune::models {

bool is_decoder_projection(std::string_view fqn) {
  static constexpr std::array<std::string_view, 7> kSuffixes = {
      ".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.o_proj",
      ".mlp.gate_proj",    ".mlp.up_proj",      ".mlp.down_proj"};
  if (!fqn.starts_with("model.layers.")) return false;
  for (std::string_view s : kSuffixes)
    if (fqn.ends_with(s)) return true;
  return false;
}

QuantizedPart quantized_part(const quant::ModelQuantization& q, std::string_view fqn) {
  if (is_decoder_projection(fqn) || (q.head && fqn == "lm_head")) return QuantizedPart::linear;
  if (q.embedding && fqn == "model.embed_tokens") return QuantizedPart::embedding;
  return QuantizedPart::none;
}

void check_tied_quantization(const LlamaConfig& config, const quant::ModelQuantization& q) {
  const std::string scheme = quant::weight_scheme_name(q.scheme);
  QTUNE_CHECK(!(config.tie_word_embeddings && q.head), "quantize (", scheme,
              "): the model ties lm_head to model.embed_tokens, so the head is the embedding table, which a tied "
              "Llama multiplies densely: leave out --include-head (only untied heads can be quantized)");
  QTUNE_CHECK(!(config.tie_word_embeddings && q.embedding), "quantize (", scheme,
              "): model.embed_tokens is tied to the output "
              "head, which multiplies the dense table; an int4 embedding needs an untied model");
}

int64_t quantize_llama(Llama& model, const quant::ModelQuantization& q, const QuantizeProgress& progress) {
  const LlamaConfig& config = model.config();
  const std::string scheme = quant::weight_scheme_name(q.scheme);
  QTUNE_CHECK(model.options().device.is_cpu(), "quantize (", scheme, "): the model is on ",
              model.options().device.str(), "; the quantized modules run on CPU only (load the model on CPU)");
  check_tied_quantization(config, q);
  const auto selected = [&](const Module& m, std::string_view fqn) {
    switch (quantized_part(q, fqn)) {
      case QuantizedPart::linear:
        return dynamic_cast<const nn::Linear*>(&m) != nullptr;
      case QuantizedPart::embedding:
        return dynamic_cast<const nn::Embedding*>(&m) != nullptr;
      case QuantizedPart::none:
        break;
    }
    return false;
  };
  // Every layer is checked before the first swap: a model that cannot take the scheme stays as it was.
  for (const auto& [fqn, m] : model.named_modules()) {
    if (!selected(*m, fqn)) continue;
    if (quantized_part(q, fqn) == QuantizedPart::embedding)
      quant::check_scheme_fits(*q.embedding, static_cast<nn::Embedding*>(m)->weight().size(1), fqn);
    else {
      const Tensor& w = static_cast<nn::Linear*>(m)->weight();
      quant::check_weight_scheme_fits(q.scheme, w.size(0), w.size(1), fqn);
    }
  }
  return quant::swap_modules(model, selected, [&](Module& m, std::string_view fqn) -> ModulePtr {
    ModulePtr out;
    if (quantized_part(q, fqn) == QuantizedPart::embedding) {
      out = std::make_shared<quant::QuantizedEmbedding>(static_cast<nn::Embedding&>(m).weight().detach(), *q.embedding);
    } else {
      auto& linear = static_cast<nn::Linear&>(m);
      out = quant::quantize_linear(linear.weight(), linear.bias(), q.scheme, fqn);
    }
    if (progress) progress(fqn, *out);
    return out;
  });
}

}  // namespace qtune::models
