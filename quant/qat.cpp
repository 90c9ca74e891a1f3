#include "quant/qat.h"

#include <memory>
#include <variant>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/nn/embedding.h"
#include "ops/nn/linear.h"
#include "quant/fake_quantized_embedding.h"
#include "quant/fake_quantized_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/module_swap.h"
#include "quant/qat_fake_quantize.h"
#include "quant/quantized_embedding.h"

namespace qtune::quant {
namespace {

ModulePtr prepare_one(Module& m, std::string_view fqn, const QATConfig& config) {
  if (auto* linear = dynamic_cast<nn::Linear*>(&m)) {
    check_scheme_fits(config.scheme, linear->in_features(), fqn);
    return std::make_shared<FakeQuantizedLinear>(*linear, config.scheme, config.fake_quant_after_n_steps);
  }
  if (auto* embedding = dynamic_cast<nn::Embedding*>(&m); embedding && config.embedding) {
    check_scheme_fits(*config.embedding, embedding->embedding_dim(), fqn);
    return std::make_shared<FakeQuantizedEmbedding>(*embedding, *config.embedding, config.fake_quant_after_n_steps);
  }
  return nullptr;
}

void check_on_cpu(const Tensor& weight, std::string_view fqn) {
  QTUNE_CHECK(weight.device().is_cpu(), "QAT convert: layer '", fqn, "' is on ", weight.device().str(),
              "; the quantized modules run on CPU (move the model with .to(Device::cpu()) first)");
}

// q4_0 / q8_0 / ggml_q4_0: an nn::Linear with the fake-quantized weight values (what llama.cpp will dequantize).
ModulePtr dequantized_linear(FakeQuantizedLinear& fq) {
  nn::Linear::Options options;
  options.bias = fq.bias().defined();
  options.dtype = fq.weight().dtype();
  options.device = fq.weight().device();
  std::shared_ptr<nn::Linear> linear;
  {
    SkipInitGuard skip_init;
    linear = std::make_shared<nn::Linear>(fq.in_features(), fq.out_features(), options);
  }
  NoGradGuard no_grad;
  linear->weight().copy_(fake_quantize(fq.weight(), weight_spec(fq.scheme())));
  if (options.bias) linear->bias().copy_(fq.bias());
  return linear;
}

ModulePtr convert_one(Module& m, std::string_view fqn, const QATConfig& config) {
  if (auto* fq = dynamic_cast<FakeQuantizedLinear*>(&m)) {
    QTUNE_CHECK(scheme_name(fq->scheme()) == scheme_name(config.scheme), "QAT convert: layer '", fqn,
                "' was prepared for ", scheme_name(fq->scheme()), ", but the config asks for ",
                scheme_name(config.scheme));
    if (const auto* s = std::get_if<Int8DynActInt4Weight>(&fq->scheme())) {
      check_on_cpu(fq->weight(), fqn);
      return std::make_shared<Int8DynActInt4WeightLinear>(fq->weight(), fq->bias(), *s);
    }
    if (const auto* s = std::get_if<Int4WeightOnly>(&fq->scheme())) {
      check_on_cpu(fq->weight(), fqn);
      return std::make_shared<Int4WeightOnlyLinear>(fq->weight(), fq->bias(), *s);
    }
    return dequantized_linear(*fq);
  }
  if (auto* fq = dynamic_cast<FakeQuantizedEmbedding*>(&m)) {
    check_on_cpu(fq->weight(), fqn);
    return std::make_shared<QuantizedEmbedding>(fq->weight(), fq->scheme());
  }
  return nullptr;
}

// Checks every selected layer first (building nothing), so a failure leaves the model untouched.
void check_all(Module& model, const QATConfig& config, const ModuleFilter& filter) {
  for (const auto& [fqn, m] : model.named_modules()) {
    if (fqn.empty() || !filter(*m, fqn)) continue;
    if (config.step == QATStep::Prepare) {
      if (auto* linear = dynamic_cast<nn::Linear*>(m)) check_scheme_fits(config.scheme, linear->in_features(), fqn);
      if (auto* embedding = dynamic_cast<nn::Embedding*>(m); embedding && config.embedding)
        check_scheme_fits(*config.embedding, embedding->embedding_dim(), fqn);
    } else if (auto* fq = dynamic_cast<FakeQuantizedLinear*>(m)) {
      QTUNE_CHECK(scheme_name(fq->scheme()) == scheme_name(config.scheme), "QAT convert: layer '", fqn,
                  "' was prepared for ", scheme_name(fq->scheme()), ", but the config asks for ",
                  scheme_name(config.scheme));
      if (std::holds_alternative<Int8DynActInt4Weight>(fq->scheme()) ||
          std::holds_alternative<Int4WeightOnly>(fq->scheme()))
        check_on_cpu(fq->weight(), fqn);
    } else if (auto* fe = dynamic_cast<FakeQuantizedEmbedding*>(m)) {
      check_on_cpu(fe->weight(), fqn);
    }
  }
}

template <class F>
void for_each_fake_quant(Module& model, F&& f) {
  for (const auto& [fqn, m] : model.named_modules()) {
    if (auto* l = dynamic_cast<FakeQuantizedLinear*>(m)) f(*l);
    if (auto* e = dynamic_cast<FakeQuantizedEmbedding*>(m)) f(*e);
  }
}

}  // namespace

bool default_qat_filter(const Module&, std::string_view fqn) { return fqn != "lm_head" && !fqn.ends_with(".lm_head"); }

int64_t quantize_(Module& model, const QATConfig& config, const ModuleFilter& filter) {
  check_all(model, config, filter);
  return swap_modules(model, filter, [&](Module& m, std::string_view fqn) {
    return config.step == QATStep::Prepare ? prepare_one(m, fqn, config) : convert_one(m, fqn, config);
  });
}

void set_qat_step(Module& model, int64_t step) {
  for_each_fake_quant(model, [&](auto& m) { m.set_step(step); });
}

void set_fake_quant_enabled(Module& model, bool on) {
  for_each_fake_quant(model, [&](auto& m) { m.set_enabled(on); });
}

}  // namespace qtune::quant
