// `qtune export`: merge a LoRA adapter (HF PEFT layout) into its base model and write a standard Hugging Face
// checkpoint that transformers loads, or one GGUF file that llama.cpp runs (docs/numerics.md §4: the merge is
// done in f32; a QLoRA adapter is merged into the dequantized NF4 base, the weights its training saw; §9: GGUF).
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <qtune/qtune.h>

#include "qtune/commands.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string model_dir, adapter_dir, format = "hf", out_dir, dtype, type;
  bool base_nf4 = false, force = false;
};

// config.json's torch_dtype of a checkpoint (or what a GGUF file's type stands for): the file dtype an export keeps
// by default.
DType file_dtype(const std::string& model_dir) {
  const std::string name = io::is_gguf_file(model_dir)
                               ? models::llama_config_from_gguf(io::GgufFile::open(model_dir)).torch_dtype
                               : models::load_llama_config(model_dir).torch_dtype;
  if (name == "float32") return DType::f32;
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16") return DType::f16;
  QTUNE_FAIL(model_dir, "/config.json: torch_dtype '", name, "' is not f32, bf16 or f16: pass --dtype");
}

// A quantized base is exported through its dequantized weights, which only NF4 keeps close enough to the
// original to be the weights a LoRA was trained against (QLoRA); the integer schemes are inference formats. A
// q4_0 / q8_0 base holds llama.cpp's own blocks, which a GGUF export writes again unchanged.
void check_exportable_base(const std::string& model_dir, bool base_nf4, bool gguf, bool adapter) {
  const auto quantization = models::read_quantization_config(model_dir);
  if (!quantization) return;
  QTUNE_CHECK(!base_nf4, model_dir, " is already quantized: --base-nf4 takes a full-precision base");
  const std::string scheme(quant::weight_scheme_name(quantization->scheme));
  if (gguf && !adapter && (scheme == "q4_0" || scheme == "q8_0") && !quantization->embedding) return;
  QTUNE_CHECK(std::holds_alternative<quant::NF4>(quantization->scheme) && !quantization->embedding, model_dir,
              " is quantized with ", scheme, quantization->embedding ? " (embedding included)" : "",
              ": export merges into a full-precision or an nf4 base only",
              gguf ? " (a q4_0 / q8_0 base without an adapter goes to GGUF as it is)" : "");
}

// Every FrozenNF4Linear left after the merge (a QLoRA base's non-target projections) becomes a Linear holding
// its dequantized weight: the exported model computes what the QLoRA model did.
int64_t dequantize_nf4(models::Llama& model) {
  NoGradGuard no_grad;
  const DType dtype = model.options().dtype;
  return quant::swap_modules(
      model, [](const Module& m, std::string_view) { return dynamic_cast<const quant::FrozenNF4Linear*>(&m); },
      [&](Module& m, std::string_view) -> ModulePtr {
        auto& nf4 = static_cast<quant::FrozenNF4Linear&>(m);
        std::shared_ptr<nn::Linear> linear;
        {
          SkipInitGuard skip;
          linear = std::make_shared<nn::Linear>(nf4.in_features(), nf4.out_features(),
                                                nn::Linear::Options{.bias = nf4.bias().defined(), .dtype = dtype});
        }
        linear->weight().copy_(nf4.weight().dequantize(DType::f32));
        if (nf4.bias().defined()) linear->bias().copy_(nf4.bias().detach());
        linear->requires_grad_(false);
        return linear;
      });
}

std::string human_size(uintmax_t bytes) {
  return bytes >= (1u << 30) ? fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1u << 30))
                             : fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1u << 20));
}

// The GGUF file of the merged model, with the tokenizer and chat template of --model.
void write_gguf(models::Llama& model, const ExportArgs& args, models::GgufFileType type) {
  const bool from_gguf = io::is_gguf_file(args.model_dir);
  QTUNE_CHECK(from_gguf || fs::exists(fs::path(args.model_dir) / "tokenizer.json") ||
                  fs::exists(fs::path(args.model_dir) / "tokenizer.model"),
              "--format gguf: ", args.model_dir,
              " has no tokenizer.json or tokenizer.model, and llama.cpp cannot run a model without its tokenizer");
  const auto tokenizer = data::load_tokenizer(args.model_dir);
  const fs::path parent = fs::path(args.out_dir).lexically_normal().parent_path();
  QTUNE_CHECK(parent.empty() || fs::is_directory(parent), "--out ", args.out_dir, ": directory ", parent.string(),
              " does not exist");
  models::save_gguf(model, args.out_dir,
                    {.type = type,
                     .tokenizer = tokenizer.get(),
                     .chat_template = from_gguf ? data::gguf_chat_template(io::GgufFile::open(args.model_dir))
                                                : data::read_chat_template(args.model_dir),
                     .name = fs::path(args.model_dir).lexically_normal().filename().string()});
}

// The merged model as a Hugging Face directory, beside the tokenizer files of --model.
void write_hf(models::Llama& model, const ExportArgs& args, DType dtype) {
  // Written beside --out and swapped in: --out is either untouched or complete, whenever this process stops.
  const fs::path parent = fs::path(args.out_dir).lexically_normal().parent_path();
  QTUNE_CHECK(parent.empty() || fs::is_directory(parent), "--out ", args.out_dir, ": directory ", parent.string(),
              " does not exist");
  io::write_directory_atomic(args.out_dir, [&](const fs::path& staging) {
    models::save_llama(model, staging.string(), models::SaveOptions{.dtype = dtype});
    if (io::is_gguf_file(args.model_dir)) data::load_tokenizer(args.model_dir)->save(staging.string());
    for (const char* name : kTokenizerFiles) {
      const fs::path from = fs::path(args.model_dir) / name;
      if (fs::is_regular_file(from)) fs::copy_file(from, staging / name);
    }
  });
}

int run_export(const ExportArgs& args) {
  const auto t0 = std::chrono::steady_clock::now();
  QTUNE_CHECK(args.format == "hf" || args.format == "gguf", "unknown --format '", args.format, "' (formats: hf, gguf)");
  const bool gguf = args.format == "gguf";
  QTUNE_CHECK(gguf || args.type.empty(), "--type goes with --format gguf (an hf export takes --dtype)");
  QTUNE_CHECK(!gguf || args.dtype.empty(),
              "--format gguf takes --type (f32, f16, bf16, q8_0, q4_0, q4_k_m), not --dtype");
  const auto gguf_type = models::gguf_file_type_from_name(args.type.empty() ? "f16" : args.type);
  QTUNE_CHECK(gguf_type.has_value(), "--type '", args.type,
              "' is not a GGUF type (f32, f16, bf16, q8_0, q4_0, q4_k_m)");
  for (const std::string& dir : {args.out_dir, args.model_dir, args.adapter_dir}) recover_directory(dir);
  if (gguf) {
    QTUNE_CHECK(!fs::is_directory(args.out_dir), "--out ", args.out_dir,
                " is a directory: --format gguf writes one file (e.g. model-q4_0.gguf)");
    QTUNE_CHECK(args.force || !fs::exists(args.out_dir), "--out ", args.out_dir,
                " exists: choose another file or pass --force to write over it");
  } else {
    QTUNE_CHECK(args.force || !fs::exists(args.out_dir) || fs::is_empty(args.out_dir), "--out ", args.out_dir,
                " exists and is not empty: choose another directory or pass --force to write over it");
  }
  QTUNE_CHECK(fs::is_directory(args.model_dir) || io::is_gguf_file(args.model_dir), "--model ", args.model_dir,
              " is not a model directory or a GGUF file");
  QTUNE_CHECK(args.adapter_dir.empty() || fs::is_directory(args.adapter_dir), "--adapter ", args.adapter_dir,
              " is not a directory");
  QTUNE_CHECK(!args.base_nf4 || !args.adapter_dir.empty(), "--base-nf4 goes with --adapter (a QLoRA adapter)");
  check_exportable_base(args.model_dir, args.base_nf4, gguf, !args.adapter_dir.empty());
  const DType dtype = gguf ? DType::f32 : args.dtype.empty() ? file_dtype(args.model_dir) : dtype_from_name(args.dtype);

  const auto model = models::load_model(args.model_dir);  // f32: the merge's precision
  std::optional<models::LoraConfig> lora;
  if (!args.adapter_dir.empty()) {
    lora = models::load_adapter_config(args.adapter_dir);
    if (args.base_nf4) {
      models::quantize_llama(*model, models::qlora_base(*lora));  // what the QLoRA recipe trained over
    }
    models::load_adapter(*model, args.adapter_dir);
  }
  const int64_t merged = lora ? models::merge_lora(*model) : 0;
  dequantize_nf4(*model);

  if (gguf) {
    write_gguf(*model, args, *gguf_type);
  } else {
    write_hf(*model, args, dtype);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (lora)
    fmt::print("merged {} modules ({}; rank {}, alpha {}) from {}{} into {}\n", merged, fmt::join(lora->targets, ", "),
               lora->rank, lora->alpha, args.adapter_dir, args.base_nf4 ? " (base quantized to nf4 first)" : "",
               args.model_dir);
  if (gguf) {
    fmt::print("wrote {} (gguf {}, {}) in {:.2f} s\n", args.out_dir, models::gguf_file_type_name(*gguf_type),
               human_size(fs::file_size(args.out_dir)), seconds);
    fmt::print("run it with llama.cpp: llama-completion -m {} -p \"...\"\n", args.out_dir);
  } else {
    fmt::print("wrote {} ({}, {}) in {:.2f} s\n", args.out_dir, args.format, dtype_name(dtype), seconds);
  }
  return 0;
}

}  // namespace

void add_export_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand(
      "export", "Merge a LoRA adapter into its base and write a Hugging Face checkpoint or a GGUF file (llama.cpp)");
  auto args = std::make_shared<ExportArgs>();
  cmd->add_option("--model", args->model_dir, "base model: a Hugging Face directory, or an nf4 one (qtune quantize)")
      ->required();
  cmd->add_option("--adapter", args->adapter_dir,
                  "LoRA adapter directory (adapter_config.json + adapter_model.safetensors); without one the model "
                  "is re-saved (e.g. in another --dtype)");
  cmd->add_option("--format", args->format,
                  "output format (hf: config.json + model.safetensors + tokenizer; gguf: one llama.cpp file)")
      ->capture_default_str();
  cmd->add_option("--out", args->out_dir, "output directory (hf: empty or absent) or file (gguf: absent)")->required();
  cmd->add_option("--type", args->type,
                  "GGUF tensor type: f32, f16 (default), bf16, q8_0, q4_0 (q4_0 keeps the embedding and output head "
                  "in q8_0) or q4_k_m (llama-quantize's Q4_K_M, byte for byte)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"}));
  cmd->add_option("--dtype", args->dtype, "file dtype: f32, bf16 or f16 (default: the base's)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_flag("--base-nf4", args->base_nf4,
                "quantize a full-precision base to nf4 before merging, as QLoRA training saw it");
  cmd->add_flag("--force", args->force, "write over a non-empty --out");
  cmd->callback([args, &status] { status = run_export(*args); });
}

}  // namespace qtune::cli
