// `qtune quantize`: post-training quantization of a Hugging Face Llama directory into a quantized checkpoint
// (docs/quantized-format.md), with an optional per-layer accuracy report.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <qtune/qtune.h>
#include <nlohmann/json.hpp>

#include "qtune/commands.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

struct QuantizeArgs {
  std::string model_dir, out_dir, scheme, calibration;
  std::optional<int64_t> group_size;
  bool include_embedding = false, include_head = false, report = false, force = false;
};

constexpr int64_t kCalibrationTokens = 256;
constexpr const char* kBuiltinCalibration =
    "The old lighthouse keeper climbed the spiral stairs every evening, counting the steps as his father had "
    "taught him. From the lantern room he could see the fishing boats returning across the grey water, their "
    "lamps swaying with the swell. He wrote the weather in a leather book: wind from the north-west, light "
    "rain, visibility four miles. In the winter the ships came less often, and he read by the stove, history "
    "and poetry and the almanac, until the glass needed cleaning again and the light had to be trimmed.";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in.good(), "cannot read ", path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// 10 log10(sum x^2 / sum (x - y)^2): +inf when y equals x.
double sqnr_db(const Tensor& x, const Tensor& y) {
  const auto a = x.to_vector<double>(), b = y.to_vector<double>();
  double signal = 0.0, noise = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    signal += a[i] * a[i];
    noise += (a[i] - b[i]) * (a[i] - b[i]);
  }
  return noise > 0.0 ? 10.0 * std::log10(signal / noise) : INFINITY;
}

// The weight a quantized module multiplies with: [out, in] (or the embedding table [V, C]) in f32.
Tensor dequantized_weight(Module& m) {
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) return l->weight().detach().to(DType::f32);
  if (auto* e = dynamic_cast<nn::Embedding*>(&m)) return e->weight().detach().to(DType::f32);
  if (auto* l = dynamic_cast<quant::Int4WeightOnlyLinear*>(&m)) return l->dequantized_weight().to(DType::f32);
  if (auto* l = dynamic_cast<quant::FrozenNF4Linear*>(&m)) return l->weight().dequantize(DType::f32);
  const auto rows_of = [](const quant::PackedInt4& p) {
    const int64_t rows = p.codes.size(0);
    std::vector<int64_t> ids(static_cast<size_t>(rows));
    std::iota(ids.begin(), ids.end(), int64_t{0});
    Tensor w = Tensor::empty({rows, p.codes.size(1) * 2}, p.dtype);
    quant::dequantize_int4_rows(p, ids.data(), rows, w);
    return w.to(DType::f32);
  };
  if (auto* l = dynamic_cast<quant::Int8DynActInt4WeightLinear*>(&m)) return rows_of(l->packed_weight());
  if (auto* e = dynamic_cast<quant::QuantizedEmbedding*>(&m)) return rows_of(e->packed_weight());
  QTUNE_FAIL("quantize --report: no weight to compare in a ", m.type_name());
}

// Stands in for a linear while the float model runs on the calibration batch, keeping its input.
class CaptureInput : public Module {
 public:
  explicit CaptureInput(ModulePtr inner) : Module("CaptureInput"), inner(std::move(inner)) {}
  Tensor forward(const Tensor& x) override {
    input = x.detach().clone();
    return inner->forward(x);
  }
  ModulePtr inner;
  Tensor input;  // [1, T, in]
};

std::vector<int32_t> calibration_tokens(const QuantizeArgs& args, const models::Llama& model) {
  std::string text = kBuiltinCalibration;
  if (!args.calibration.empty()) {
    QTUNE_CHECK(fs::is_regular_file(args.calibration), "--calibration ", args.calibration, " not found");
    text = read_file(args.calibration);
  }
  std::vector<int32_t> ids;
  if (fs::exists(fs::path(args.model_dir) / "tokenizer.model") ||
      fs::exists(fs::path(args.model_dir) / "tokenizer.json")) {
    ids = data::load_tokenizer(args.model_dir)->encode(text, true);
  } else {  // no tokenizer: the text's bytes still give varied activations
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c % model.config().vocab_size));
  }
  const int64_t keep =
      std::min({kCalibrationTokens, model.config().max_position_embeddings, static_cast<int64_t>(ids.size())});
  QTUNE_CHECK(keep > 0, "--calibration ", args.calibration, " has no text");
  ids.resize(static_cast<size_t>(keep));
  return ids;
}

// Runs the float model on the calibration batch with every module `quantization` changes wrapped, and
// returns each one's input.
std::map<std::string, Tensor> capture_inputs(models::Llama& model, const std::vector<int32_t>& ids,
                                             const quant::ModelQuantization& q) {
  std::vector<std::pair<std::string, std::shared_ptr<CaptureInput>>> wrappers;
  for (const auto& [fqn, m] : model.named_modules())
    if (dynamic_cast<nn::Linear*>(m) && models::quantized_part(q, fqn) == models::QuantizedPart::linear)
      wrappers.emplace_back(fqn, nullptr);
  for (auto& [fqn, w] : wrappers) {
    w = std::make_shared<CaptureInput>(nullptr);
    w->inner = model.replace_module(fqn, w);
  }
  {
    NoGradGuard no_grad;
    EvalModeGuard eval(model);
    std::vector<int64_t> ids64(ids.begin(), ids.end());
    model.forward(Tensor::from_vector(ids64, {1, static_cast<int64_t>(ids.size())}));
  }
  std::map<std::string, Tensor> inputs;
  for (auto& [fqn, w] : wrappers) {
    model.replace_module(fqn, w->inner);
    inputs[fqn] = w->input;
  }
  return inputs;
}

struct LayerReport {
  std::string name, module;
  double weight_sqnr, output_sqnr;  // output NaN: not measured (the embedding)
};

void print_report(const std::vector<LayerReport>& rows) {
  fmt::print("{:<40} {:<28} {:>16} {:>16}\n", "layer", "module", "weight SQNR (dB)", "output SQNR (dB)");
  for (const LayerReport& r : rows)
    fmt::print("{:<40} {:<28} {:>16.2f} {:>16}\n", r.name, r.module, r.weight_sqnr,
               std::isnan(r.output_sqnr) ? std::string("-") : fmt::format("{:.2f}", r.output_sqnr));
}

nlohmann::ordered_json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

uint64_t checkpoint_bytes(const std::string& dir) { return io::CheckpointFiles::open(dir).total_bytes(); }

int run_quantize(const QuantizeArgs& args) {
  const auto t0 = clock::now();
  quant::ModelQuantization q{quant::parse_weight_scheme(args.scheme, args.group_size)};
  if (args.include_embedding) q.embedding = quant::EmbeddingInt4{};
  q.head = args.include_head;
  recover_directory(args.out_dir);
  recover_directory(args.model_dir);
  QTUNE_CHECK(args.force || !fs::exists(args.out_dir) || fs::is_empty(args.out_dir), "--out ", args.out_dir,
              " exists and is not empty: choose another directory or pass --force to write over it");
  std::error_code ec;
  QTUNE_CHECK(!fs::equivalent(args.out_dir, args.model_dir, ec), "--out ", args.out_dir, " is the --model directory: ",
              "write the quantized model elsewhere (it would replace the full-precision one)");
  QTUNE_CHECK(!models::read_quantization_config(args.model_dir), args.model_dir,
              " is already quantized: quantize the full-precision checkpoint it came from");

  // Without --report nothing needs the float weights: the streaming loader quantizes each projection as
  // it is read, so the full-precision model never sits in memory.
  std::shared_ptr<models::Llama> model;
  std::vector<LayerReport> rows;
  int64_t changed = 0;
  if (!args.report) {
    model = models::load_llama_quantized(args.model_dir, q, {}, [](int64_t layer, int64_t layers) {
      fmt::print(stderr, "[quantize] layer {}/{}\n", layer, layers);
    });
    changed = 7 * model->config().num_hidden_layers + (q.embedding ? 1 : 0) + (q.head ? 1 : 0);
  } else {
    model = models::load_llama(args.model_dir);
    std::map<std::string, Tensor> inputs = capture_inputs(*model, calibration_tokens(args, *model), q);
    changed = models::quantize_llama(*model, q, [&](std::string_view fqn, Module& quantized) {
      fmt::print(stderr, "[quantize] {} -> {}\n", fqn, quantized.type_name());
      Module& original = *model->find_module(fqn);  // still in place: the swap comes after this call
      LayerReport r{std::string(fqn), quantized.type_name(),
                    sqnr_db(dequantized_weight(original), dequantized_weight(quantized)), NAN};
      if (auto it = inputs.find(r.name); it != inputs.end()) {
        NoGradGuard no_grad;
        r.output_sqnr = sqnr_db(original.forward(it->second), quantized.forward(it->second));
        inputs.erase(it);
      }
      rows.push_back(std::move(r));
    });
  }

  // Everything goes into a directory beside --out that is swapped in complete: a kill at any moment leaves the
  // old --out (or none) intact, and the next command finishes or removes what was left.
  io::StagedDirectory staged(args.out_dir);
  models::save_quantized_llama(*model, q, staged.path().string());
  io::crash_point("quantize:weights_written");
  for (const char* name : kTokenizerFiles) {
    const fs::path from = fs::path(args.model_dir) / name;
    if (fs::is_regular_file(from)) io::write_file_atomic((staged.path() / name).string(), read_file(from));
  }
  if (args.report) {
    print_report(rows);
    nlohmann::ordered_json j;
    j["scheme"] = quant::weight_scheme_name(q.scheme);
    j["calibration"] = args.calibration.empty() ? "(built-in sentence)" : args.calibration;
    for (const LayerReport& r : rows)
      j["layers"].push_back({{"name", r.name},
                             {"module", r.module},
                             {"weight_sqnr_db", finite_or_null(r.weight_sqnr)},
                             {"output_sqnr_db", finite_or_null(r.output_sqnr)}});
    io::write_file_atomic((staged.path() / "report.json").string(), j.dump(2) + "\n");
  }
  const uint64_t before = checkpoint_bytes(args.model_dir), after = checkpoint_bytes(staged.path().string());
  staged.commit();
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  fmt::print("quantized {} modules with {} in {:.2f} s: {} -> {} bytes of weights ({:.2f}x smaller), written to {}\n",
             changed, quant::weight_scheme_name(q.scheme), seconds, before, after,
             static_cast<double>(before) / static_cast<double>(after), args.out_dir);
  return 0;
}

}  // namespace

void add_quantize_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("quantize", "Post-training quantization of a model into a quantized checkpoint");
  auto args = std::make_shared<QuantizeArgs>();
  cmd->add_option("--model", args->model_dir, "Hugging Face model directory (full precision)")->required();
  cmd->add_option("--scheme", args->scheme, "8da4w, int4wo, nf4, q4_0 or q8_0")->required();
  const auto default_group = [](const char* scheme) {
    return std::to_string(quant::group_size_of(quant::parse_linear_scheme(scheme)));
  };
  cmd->add_option(
      "--group-size", args->group_size,
      "8da4w / int4wo group size (default " + default_group("8da4w") + " / " + default_group("int4wo") + ")");
  cmd->add_flag("--include-embedding", args->include_embedding, "also quantize the token embedding (int4, group 32)");
  cmd->add_flag("--include-head", args->include_head, "also quantize the output head with the scheme");
  cmd->add_flag("--report", args->report, "print per-layer weight and output SQNR, and write report.json in --out");
  cmd->add_option("--calibration", args->calibration,
                  "text file for --report's activations (default: a built-in "
                  "paragraph)");
  cmd->add_option("--out", args->out_dir, "output directory (must be empty or absent)")->required();
  cmd->add_flag("--force", args->force, "replace a non-empty --out (the old one stays until the new one is complete)");
  cmd->callback([args, &status] { status = run_quantize(*args); });
}

}  // namespace qtune::cli
