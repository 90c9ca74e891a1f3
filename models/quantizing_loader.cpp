#include "models/quantizing_loader.h"

#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/checkpoint_files.h"
#include "models/pending_linear.h"
#include "models/quantize_model.h"
#include "ops/nn/linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/quantized_embedding.h"
#include "quant/weight_quantize.h"

namespace qtune::models {
namespace {

// The tensor `name` in the compute dtype: a view of the mapped file when the dtypes agree, else a converted
// copy. Either way the only full-precision bytes of it in memory.
Tensor read_tensor(const io::CheckpointFiles& files, const std::string& name, DType dtype) {
  NoGradGuard no_grad;
  return files.tensor(name).to(dtype);
}

// Quantizes the projection `fqn` from its own temporary and drops the temporary and its mapped pages. On a
// GPU the temporary is uploaded and quantized there: one projection in full precision at a time.
void load_projection(Llama& model, const io::CheckpointFiles& files, const std::string& fqn,
                     const quant::WeightScheme& scheme, DType dtype) {
  const std::string name = fqn + ".weight";
  ModulePtr quantized =
      quant::quantize_linear(read_tensor(files, name, dtype).to(model.options().device), Tensor(), scheme, fqn);
  model.replace_module(fqn, std::move(quantized));
  files.release(name);
}

// The projection `fqn` ([out, in]) with a reserved weight: plain, or NF4 parts.
void reserve_projection(Llama& model, const std::string& fqn, int64_t out, int64_t in, bool nf4) {
  const LlamaOptions& o = model.options();
  if (nf4) {
    model.replace_module(fqn, std::make_shared<quant::FrozenNF4Linear>(
                                  quant::NF4Tensor::reserved({out, in}, o.dtype, o.device), Tensor()));
    return;
  }
  auto linear = std::make_shared<nn::Linear>(Tensor::reserved({out, in}, o.dtype, o.device));
  model.replace_module(fqn, std::move(linear));
}

// quantization: null for plain projections. reserve: leave the decoder projections reserved.
std::shared_ptr<Llama> load_streamed(const std::string& dir, const quant::ModelQuantization* quantization,
                                     const LoadOptions& options, const LoadProgress& progress, bool reserve) {
  const quant::ModelQuantization plain{};
  const LlamaConfig config = load_llama_config(dir);
  // A quantized embedding runs on CPU only.
  const quant::ModelQuantization& q = quantization != nullptr ? *quantization : plain;
  QTUNE_CHECK(options.device.is_cpu() || quantization == nullptr || (quant::quantizes_on_gpu(q.scheme) && !q.embedding),
              dir, ": on ", options.device.str(),
              " the quantizing loader streams NF4 or float8 projections (no "
              "quantized embedding); the other schemes run on CPU");
  check_tied_quantization(config, q);
  const io::CheckpointFiles files = io::CheckpointFiles::open(dir);
  LlamaOptions model_options = llama_options(options);
  model_options.defer_projections = true;
  std::shared_ptr<Llama> model;
  {
    SkipInitGuard no_random_init;  // allocated, never written: its pages are touched only by the copies below
    model = std::make_shared<Llama>(config, model_options);
  }

  // Everything is checked before any tensor data is read: names and shapes, then the schemes' constraints.
  const StateDict params = model->state_dict();  // embedding, norms and an untied head
  std::map<std::string, Shape> expected;
  for (const auto& [name, param] : params) expected[name] = param.shape();
  std::vector<std::vector<std::string>> projections(static_cast<size_t>(config.num_hidden_layers));
  for (const auto& [fqn, module] : model->named_modules()) {
    const auto* pending = dynamic_cast<const PendingLinear*>(module);
    if (pending == nullptr) continue;
    expected[fqn + ".weight"] = {pending->out_features(), pending->in_features()};
    if (quantization != nullptr)
      quant::check_weight_scheme_fits(q.scheme, pending->out_features(), pending->in_features(), fqn);
    const size_t layer = std::stoul(fqn.substr(std::string("model.layers.").size()));
    projections.at(layer).push_back(fqn);
  }
  check_llama_tensors(files, expected, config);
  if (q.embedding) quant::check_scheme_fits(*q.embedding, config.hidden_size, "model.embed_tokens");
  if (q.head) quant::check_weight_scheme_fits(q.scheme, config.vocab_size, config.hidden_size, "lm_head");

  const DType dtype = model_options.dtype;
  for (const auto& [name, param] : params) {
    // The decoder projections are pending (loaded below); what is quantized here is the embedding and the head.
    const std::string module(split_name(name).parent);
    switch (quantization != nullptr ? quantized_part(q, module) : QuantizedPart::none) {
      case QuantizedPart::embedding:
        model->replace_module(
            module, std::make_shared<quant::QuantizedEmbedding>(read_tensor(files, name, dtype), *q.embedding));
        files.release(name);
        break;
      case QuantizedPart::linear:
        load_projection(*model, files, module, q.scheme, dtype);
        break;
      case QuantizedPart::none:
        copy_tensor(files, name, param);
        break;
    }
  }
  const auto layers = static_cast<int64_t>(projections.size());
  for (int64_t i = 0; i < layers; ++i) {
    for (const std::string& fqn : projections[static_cast<size_t>(i)]) {
      if (reserve) {
        const Shape& shape = expected.at(fqn + ".weight");
        reserve_projection(*model, fqn, shape[0], shape[1], std::holds_alternative<quant::NF4>(q.scheme));
      } else {
        load_projection(*model, files, fqn, q.scheme, dtype);
      }
    }
    if (progress) progress(i + 1, layers);
  }
  return model;
}

}  // namespace

std::shared_ptr<Llama> load_llama_quantized(const std::string& dir, const quant::ModelQuantization& quantization,
                                            const LoadOptions& options, const LoadProgress& progress) {
  return load_streamed(dir, &quantization, options, progress, false);
}

std::shared_ptr<Llama> load_llama_reserved(const std::string& dir, const quant::ModelQuantization* nf4_base,
                                           const LoadOptions& options) {
  QTUNE_CHECK(nf4_base == nullptr || std::holds_alternative<quant::NF4>(nf4_base->scheme),
              "load_llama_reserved: the frozen base must be NF4 (other schemes load whole, then shard)");
  return load_streamed(dir, nf4_base, options, {}, true);
}

}  // namespace qtune::models
