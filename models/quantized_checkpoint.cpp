#include "models/quantized_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint_files.h"
#include "engine/io/json_reader.h"
#include "engine/numerics/ggml_blocks.h"
#include "engine/overloaded.h"
#include "models/gguf_import.h"
#include "models/pending_linear.h"
#include "models/quantize_model.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/ggml_blocks.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/quantized_embedding.h"

namespace qtune::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

using numerics::kGgmlBlock;  // q4_0 / q8_0 weights per block

// fp8 weights are LoRA's frozen training base, not a stored format.
[[noreturn]] void no_fp8_checkpoint() {
  QTUNE_FAIL(
      "quantized checkpoints hold 8da4w, int4wo, nf4, q4_0 or q8_0 weights; fp8 is a training-time base for "
      "LoRA (recipe lora with fp8.recipe), not a checkpoint format");
}

DType torch_dtype(const std::string& name, const std::string& source) {
  if (name == "float32") return DType::f32;
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16") return DType::f16;
  if (name == "float64") return DType::f64;
  QTUNE_FAIL(source, ": torch_dtype '", name, "' is not a checkpoint dtype (float32, bfloat16, float16, float64)");
}

std::string config_path(const std::string& dir) {
  return fs::is_regular_file(dir) ? dir : (fs::path(dir) / "config.json").string();
}

ordered_json quantization_json(const quant::ModelQuantization& q) {
  ordered_json j;
  j["quant_method"] = "qtune";
  j["format_version"] = kQuantizedFormatVersion;
  j["scheme"] = quant::weight_scheme_name(q.scheme);
  j["group_size"] = quant::weight_scheme_group_size(q.scheme);
  j["embedding"] =
      q.embedding ? ordered_json{{"scheme", "int4"}, {"group_size", q.embedding->group_size}} : ordered_json(nullptr);
  j["head"] = q.head;
  return j;
}

// ---- the stored parts of one quantized module -------------------------------------------------------

// One tensor a quantized module is stored as; dtype nullopt: any floating dtype (NF4's factors and mean).
struct Part {
  std::string name;
  std::optional<DType> dtype;
  Shape shape;
  const char* meaning;
};

std::vector<Part> linear_parts(const std::string& fqn, int64_t in, int64_t out, const quant::WeightScheme& scheme) {
  const int64_t g = quant::weight_scheme_group_size(scheme);
  return std::visit(
      Overloaded{[&](const quant::Int8DynActInt4Weight&) -> std::vector<Part> {
                   return {{fqn + ".weight_int4", DType::u8, {out, in / 2}, "int4 codes, two per byte"},
                           {fqn + ".weight_scales", DType::f32, {out, in / g}, "one scale per group"}};
                 },
                 [&](const quant::Int4WeightOnly&) -> std::vector<Part> {
                   return {{fqn + ".weight_int4", DType::u8, {out, in / 2}, "int4 codes, two per byte"},
                           {fqn + ".weight_scales", DType::f32, {out, in / g}, "one scale per group"},
                           {fqn + ".weight_zeros", DType::f32, {out, in / g}, "one zero per group"}};
                 },
                 [&](const quant::NF4&) -> std::vector<Part> {
                   const int64_t blocks = (in * out + g - 1) / g;
                   const int64_t scaler_blocks =
                       (blocks + quant::NF4Tensor::kScalerBlockSize - 1) / quant::NF4Tensor::kScalerBlockSize;
                   return {{fqn + ".weight_nf4_codes", DType::u8, {blocks * g / 2}, "NF4 codes, two per byte"},
                           {fqn + ".weight_nf4_scalers", DType::i8, {blocks}, "one int8 scaler per block of 64"},
                           {fqn + ".weight_nf4_factors", std::nullopt, {scaler_blocks}, "one factor per 256 blocks"},
                           {fqn + ".weight_nf4_mean", std::nullopt, {1}, "the mean of the absmaxes"}};
                 },
                 [&](const quant::Float8Weights&) -> std::vector<Part> { no_fp8_checkpoint(); },
                 [&](const quant::Q4_0&) -> std::vector<Part> {
                   return {{fqn + ".weight_q4_0", DType::u8, {out, in / 2}, "q4_0 codes, 16 bytes per block of 32"},
                           {fqn + ".weight_d", DType::f16, {out, in / kGgmlBlock}, "one f16 d per block of 32"}};
                 },
                 [&](const quant::Q8_0&) -> std::vector<Part> {
                   return {{fqn + ".weight_q8_0", DType::i8, {out, in}, "q8_0 codes"},
                           {fqn + ".weight_d", DType::f16, {out, in / kGgmlBlock}, "one f16 d per block of 32"}};
                 }},
      scheme);
}

std::vector<Part> embedding_parts(int64_t vocab, int64_t dim, const quant::EmbeddingInt4& e) {
  return {{"model.embed_tokens.weight_int4", DType::u8, {vocab, dim / 2}, "int4 codes, two per byte"},
          {"model.embed_tokens.weight_scales", DType::f32, {vocab, dim / e.group_size}, "one scale per group"}};
}

// ---- save ---------------------------------------------------------------------------------------------

template <class M>
M& quantized_as(Module& m, const std::string& fqn, const quant::WeightScheme& scheme) {
  auto* typed = dynamic_cast<M*>(&m);
  QTUNE_CHECK(typed != nullptr, "save_quantized_llama: layer ", fqn, " is a ", m.type_name(), ", not what scheme ",
              quant::weight_scheme_name(scheme), " makes: quantize the model (quantize_llama) before saving it");
  return *typed;
}

using Named = std::vector<std::pair<std::string, Tensor>>;

void append_linear(Module& m, const std::string& fqn, const quant::WeightScheme& scheme, Named& out) {
  const auto buffers = [&](Module& q) {
    for (auto& [name, t] : q.named_buffers(fqn, false)) out.emplace_back(name, t);
  };
  std::visit(
      Overloaded{
          [&](const quant::Int8DynActInt4Weight&) {
            buffers(quantized_as<quant::Int8DynActInt4WeightLinear>(m, fqn, scheme));
          },
          [&](const quant::Int4WeightOnly&) { buffers(quantized_as<quant::Int4WeightOnlyLinear>(m, fqn, scheme)); },
          [&](const quant::NF4&) {
            auto& nf4 = quantized_as<quant::FrozenNF4Linear>(m, fqn, scheme);
            for (auto& [part, t] : nf4.weight().parts()) out.emplace_back(fqn + ".weight_nf4_" + part, t);
          },
          [&](const quant::Float8Weights&) { no_fp8_checkpoint(); },
          [&](const auto& s) {
            constexpr bool q4 = std::is_same_v<std::decay_t<decltype(s)>, quant::Q4_0>;
            const quant::GgmlFormat format = q4 ? quant::GgmlFormat::q4_0 : quant::GgmlFormat::q8_0;
            const Tensor& w = quantized_as<nn::Linear>(m, fqn, scheme).weight();
            quant::GgmlPlanes b = quant::encode_ggml(w, format);
            // The linear must hold exactly the values of its blocks, or the file would hold
            // another model (weights never quantized, or rounded to a narrower dtype).
            const Tensor back = quant::decode_ggml(b, format).to(w.dtype()), held = w.detach().contiguous();
            QTUNE_CHECK(std::memcmp(back.data_ptr(), held.data_ptr(), held.nbytes()) == 0,
                        "save_quantized_llama: layer ", fqn, " does not hold ", quant::weight_scheme_name(scheme),
                        " values: quantize an f32 model (quantize_llama) before saving it");
            out.emplace_back(fqn + (q4 ? ".weight_q4_0" : ".weight_q8_0"), b.codes);
            out.emplace_back(fqn + ".weight_d", b.d);
          }},
      scheme);
}

// ---- load ---------------------------------------------------------------------------------------------

class PartReader {
 public:
  PartReader(const io::CheckpointFiles& files, std::string dir) : files_(files), dir_(std::move(dir)) {}

  // Records every mismatch between `parts` and the files for `layer`.
  void check(const std::string& layer, const std::vector<Part>& parts) {
    for (const Part& p : parts) {
      const std::string want = (p.dtype ? std::string(dtype_name(*p.dtype)) : "floating") + " " + shape_str(p.shape);
      if (!files_.contains(p.name)) {
        problems_.push_back("layer " + layer + ": missing tensor " + p.name + " (" + want + ", " + p.meaning + ")");
        continue;
      }
      const io::TensorEntry& e = files_.entry(p.name);
      const auto dtype = io::to_dtype(e.dtype);
      const bool dtype_ok = dtype && (p.dtype ? *dtype == *p.dtype : is_floating(*dtype));
      if (!dtype_ok || e.shape != p.shape)
        problems_.push_back("layer " + layer + ": tensor " + p.name + " in " + files_.file_of(p.name).path() + " is " +
                            std::string(io::st_dtype_name(e.dtype)) + " " + shape_str(e.shape) + ", expected " + want +
                            " (" + p.meaning + ")");
    }
    for (const Part& p : parts) consumed_.insert(p.name);
  }
  void problem(std::string text) { problems_.push_back(std::move(text)); }
  void fail_if_any() const {
    if (problems_.empty()) return;
    std::ostringstream out;
    out << dir_ << ": the quantized checkpoint does not match its config.json:";
    for (const std::string& p : problems_) out << "\n  " << p;
    QTUNE_FAIL(out.str());
  }
  Tensor operator[](const std::string& name) const { return files_.tensor(name); }
  bool consumed(const std::string& name) const { return consumed_.count(name) > 0; }

 private:
  const io::CheckpointFiles& files_;
  std::string dir_;
  std::vector<std::string> problems_;
  std::set<std::string> consumed_;
};

ModulePtr build_linear(const PartReader& r, const std::string& fqn, int64_t in, int64_t out,
                       const quant::WeightScheme& scheme, DType dtype) {
  return std::visit(
      Overloaded{
          [&](const quant::Int8DynActInt4Weight& s) -> ModulePtr {
            quant::PackedInt4 p{r[fqn + ".weight_int4"], r[fqn + ".weight_scales"], Tensor(), dtype};
            return std::make_shared<quant::Int8DynActInt4WeightLinear>(std::move(p), Tensor(), s);
          },
          [&](const quant::Int4WeightOnly& s) -> ModulePtr {
            quant::PackedInt4 p{r[fqn + ".weight_int4"], r[fqn + ".weight_scales"], r[fqn + ".weight_zeros"], dtype};
            return std::make_shared<quant::Int4WeightOnlyLinear>(std::move(p), Tensor(), s);
          },
          [&](const quant::NF4&) -> ModulePtr {
            return std::make_shared<quant::FrozenNF4Linear>(
                quant::NF4Tensor::from_parts({out, in}, r[fqn + ".weight_nf4_codes"], r[fqn + ".weight_nf4_scalers"],
                                             r[fqn + ".weight_nf4_factors"], r[fqn + ".weight_nf4_mean"]),
                Tensor());
          },
          [&](const quant::Float8Weights&) -> ModulePtr { no_fp8_checkpoint(); },
          [&](const auto& s) -> ModulePtr {
            constexpr bool q4 = std::is_same_v<std::decay_t<decltype(s)>, quant::Q4_0>;
            const Tensor w = quant::decode_ggml({r[fqn + (q4 ? ".weight_q4_0" : ".weight_q8_0")], r[fqn + ".weight_d"]},
                                                q4 ? quant::GgmlFormat::q4_0 : quant::GgmlFormat::q8_0);
            std::shared_ptr<nn::Linear> linear;
            {
              SkipInitGuard skip_init;
              linear = std::make_shared<nn::Linear>(in, out, nn::Linear::Options{.bias = false, .dtype = dtype});
            }
            NoGradGuard no_grad;
            linear->weight().copy_(w);
            return linear;
          }},
      scheme);
}

struct Slot {
  std::string fqn;
  int64_t in, out;
};

}  // namespace

void save_quantized_llama(Llama& model, const quant::ModelQuantization& q, const std::string& dir) {
  const LlamaConfig& config = model.config();
  const DType file_dtype = torch_dtype(config.torch_dtype, "save_quantized_llama");
  Named tensors;
  {
    NoGradGuard no_grad;
    for (const auto& [fqn, m] : model.named_modules()) {
      const QuantizedPart part = quantized_part(q, fqn);
      if (part == QuantizedPart::linear) {
        append_linear(*m, fqn, q.scheme, tensors);
      } else if (part == QuantizedPart::embedding) {
        auto* e = dynamic_cast<quant::QuantizedEmbedding*>(m);
        QTUNE_CHECK(e != nullptr, "save_quantized_llama: model.embed_tokens is a ", m->type_name(),
                    ", not a QuantizedEmbedding: quantize the model (quantize_llama) before saving it");
        for (auto& [name, t] : e->named_buffers(fqn, false)) tensors.emplace_back(name, t);
      } else {
        for (auto& [name, p] : m->named_parameters(fqn, false)) tensors.emplace_back(name, p.detach().to(file_dtype));
      }
    }
  }
  io::save_checkpoint_files(dir, tensors);
  auto json = ordered_json::parse(llama_config_to_json(config));
  json["quantization_config"] = quantization_json(q);
  // The config last: a directory with a config.json is a complete checkpoint.
  io::write_file_atomic((fs::path(dir) / "config.json").string(), json.dump(2) + "\n");
}

std::shared_ptr<Llama> load_quantized_llama(const std::string& dir, const LoadOptions& options) {
  const LlamaConfig config = load_llama_config(dir);
  const std::optional<quant::ModelQuantization> q = read_quantization_config(dir);
  QTUNE_CHECK(q.has_value(), config_path(dir), " has no quantization_config: a full-precision checkpoint (load_llama)");
  QTUNE_CHECK(options.device.is_cpu(), dir, ": quantized models run on CPU only (asked for ", options.device.str(),
              "); drop --device or dequantize first");
  QTUNE_CHECK(!(config.tie_word_embeddings && (q->head || q->embedding)), config_path(dir),
              ": a tied model's head is its embedding table, which stays dense; quantization_config.embedding must be "
              "null and head false");
  const io::CheckpointFiles files = io::CheckpointFiles::open(dir);
  LlamaOptions model_options;
  model_options.dtype = options.dtype.value_or(DType::f32);
  model_options.defer_projections = true;
  std::shared_ptr<Llama> model;
  {
    SkipInitGuard no_random_init;  // every tensor is read from the files below
    model = std::make_shared<Llama>(config, model_options);
  }

  std::vector<Slot> slots;
  for (const auto& [fqn, m] : model->named_modules())
    if (const auto* pending = dynamic_cast<const PendingLinear*>(m))
      slots.push_back({fqn, pending->in_features(), pending->out_features()});
  if (quantized_part(*q, "lm_head") == QuantizedPart::linear)
    slots.push_back({"lm_head", config.hidden_size, config.vocab_size});

  PartReader reader(files, dir);
  bool fits = true;
  const auto check_fits = [&](const auto& fn) {
    try {
      fn();
    } catch (const Error& e) {
      reader.problem(e.what());
      fits = false;
    }
  };
  for (const Slot& s : slots) check_fits([&] { quant::check_weight_scheme_fits(q->scheme, s.out, s.in, s.fqn); });
  if (q->embedding)
    check_fits([&] { quant::check_scheme_fits(*q->embedding, config.hidden_size, "model.embed_tokens"); });
  if (fits) {
    for (const Slot& s : slots) reader.check(s.fqn, linear_parts(s.fqn, s.in, s.out, q->scheme));
    if (q->embedding)
      reader.check("model.embed_tokens", embedding_parts(config.vocab_size, config.hidden_size, *q->embedding));
  }
  // The unquantized tensors: the parameters the deferred model has besides a quantized embedding or head,
  // in any floating dtype of the files.
  Named params;
  for (auto& [name, p] : model->named_parameters())
    if (!(q->embedding && name == "model.embed_tokens.weight") && !(q->head && name == "lm_head.weight"))
      params.emplace_back(name, p);
  std::vector<Part> dense;
  for (const auto& [name, p] : params) dense.push_back({name, std::nullopt, p.shape(), "unquantized"});
  reader.check("(unquantized)", dense);
  if (fits)
    for (const std::string& name : files.names())
      if (!reader.consumed(name))
        reader.problem("unexpected tensor " + name + " " + shape_str(files.entry(name).shape) + " in " +
                       files.file_of(name).path());
  reader.fail_if_any();

  for (const Slot& s : slots) {
    try {
      model->replace_module(s.fqn, build_linear(reader, s.fqn, s.in, s.out, q->scheme, model_options.dtype));
    } catch (const Error& e) {
      QTUNE_FAIL(dir, ": layer ", s.fqn, ": ", e.what());
    }
  }
  if (q->embedding) {
    quant::PackedInt4 p{reader["model.embed_tokens.weight_int4"], reader["model.embed_tokens.weight_scales"], Tensor(),
                        model_options.dtype};
    model->replace_module("model.embed_tokens",
                          std::make_shared<quant::QuantizedEmbedding>(std::move(p), *q->embedding));
  }
  NoGradGuard no_grad;
  for (const auto& [name, p] : params) p.copy_(reader[name]);
  return model;
}

std::shared_ptr<Llama> load_model(const std::string& dir, const LoadOptions& options) {
  if (io::is_gguf_file(dir)) return load_gguf_llama(dir, options);
  if (read_quantization_config(dir)) return load_quantized_llama(dir, options);
  return load_llama(dir, options);
}

}  // namespace qtune::models
