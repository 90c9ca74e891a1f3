// `qtune info PATH`: what a model directory, a safetensors file or a GGUF file holds — its config (or GGUF
// metadata), tokenizer and a table of tensors — after the strict reader has validated every file.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include <fmt/core.h>
#include <qtune/qtune.h>

#include "engine/io/json_reader.h"
#include "qtune/commands.h"

namespace fs = std::filesystem;

namespace qtune::cli {
namespace {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Names compared with digit runs as numbers, so model.layers.2 comes before model.layers.10.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string_view da = std::string_view(a).substr(i, ie - i), db = std::string_view(b).substr(j, je - j);
      if (da.size() != db.size()) return da.size() < db.size();  // no leading zeros in tensor names
      if (da != db) return da < db;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

void print_tensor_table(std::vector<const io::TensorEntry*> entries) {
  std::sort(entries.begin(), entries.end(), [](auto* x, auto* y) { return natural_less(x->name, y->name); });
  size_t name_width = 4, shape_width = 5;
  for (const auto* e : entries) {
    name_width = std::max(name_width, e->name.size());
    shape_width = std::max(shape_width, shape_text(e->shape).size());
  }
  fmt::print("{:<{}}  {:<7}  {:<{}}  {:>14}\n", "name", name_width, "dtype", "shape", shape_width, "bytes");
  std::map<std::string, uint64_t> by_dtype;
  uint64_t total = 0, elements = 0;
  for (const auto* e : entries) {
    fmt::print("{:<{}}  {:<7}  {:<{}}  {:>14}\n", e->name, name_width, io::st_dtype_name(e->dtype),
               shape_text(e->shape), shape_width, e->nbytes());
    by_dtype[std::string(io::st_dtype_name(e->dtype))] += e->nbytes();
    total += e->nbytes();
    uint64_t n = 1;
    for (int64_t d : e->shape) n *= static_cast<uint64_t>(d);
    elements += n;
  }
  std::string dtypes;
  for (const auto& [name, bytes] : by_dtype) dtypes += (dtypes.empty() ? "" : ", ") + name + " " + human_bytes(bytes);
  fmt::print("{} tensors, {} elements, {} ({})\n", entries.size(), elements, human_bytes(total), dtypes);
}

// Prints config.json as written and as qtune reads it; returns why qtune cannot build the model, if it cannot.
std::optional<std::string> print_config(const fs::path& config_path) {
  const io::Json doc = io::read_json_file(config_path.string());
  QTUNE_CHECK(doc.is_object(), "the top level of ", config_path.string(), " must be a JSON object");
  fmt::print("config ({}):\n", config_path.string());
  for (const auto& [key, value] : doc.items()) fmt::print("  {:<34} {}\n", key, value.dump());
  // The parsed view: what qtune will build from it, or why it cannot.
  try {
    const models::LlamaConfig c = models::load_llama_config(config_path.string());
    fmt::print("qtune reads it as a Llama: {} layers, {} query / {} key-value heads of dim {}, {:.3f} M parameters\n",
               c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.resolved_head_dim(),
               static_cast<double>(c.num_parameters()) / 1e6);
  } catch (const Error& e) {
    fmt::print("qtune cannot build this model: {}\n", e.what());
    return e.what();
  }
  return std::nullopt;
}

void print_tokenizer(const fs::path& dir) {
  const bool has_json = fs::exists(dir / "tokenizer.json"), has_model = fs::exists(dir / "tokenizer.model");
  if (!has_json && !has_model) {
    fmt::print("tokenizer: none (no tokenizer.json or tokenizer.model)\n");
    return;
  }
  const auto tok = data::load_tokenizer(dir.string());
  const auto id_text = [](std::optional<int32_t> id) { return id ? std::to_string(*id) : std::string("none"); };
  fmt::print("tokenizer: {} ({}), {} tokens, bos {}, eos {}\n", has_json ? "tokenizer.json" : "tokenizer.model",
             tok->kind(), tok->vocab_size(), id_text(tok->bos_id()), id_text(tok->eos_id()));
}

void print_gguf(const std::string& path) {
  const auto file = io::GgufFile::open(path);
  const io::GgufHeader& h = file.header();
  fmt::print("GGUF file: {} (version {}, {} metadata keys, {} tensors, alignment {})\n", path, h.version,
             h.metadata.size(), h.tensors.size(), h.alignment);
  size_t key_width = 3;
  for (const auto& [key, value] : h.metadata) key_width = std::max(key_width, key.size());
  for (const auto& [key, value] : h.metadata)
    fmt::print("  {:<{}}  {:<6}  {}\n", key, key_width, io::gguf_type_name(value.type()), value.describe());

  std::vector<const io::GgufTensorInfo*> tensors;
  for (const auto& t : h.tensors) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(), [](auto* x, auto* y) { return natural_less(x->name, y->name); });
  size_t name_width = 4, shape_width = 5;
  for (const auto* t : tensors) {
    name_width = std::max(name_width, t->name.size());
    shape_width = std::max(shape_width, shape_text(t->shape()).size());
  }
  fmt::print("{:<{}}  {:<7}  {:<{}}  {:>14}\n", "name", name_width, "type", "shape", shape_width, "bytes");
  std::map<std::string, uint64_t> by_type;
  uint64_t total = 0, elements = 0;
  for (const auto* t : tensors) {
    const std::string type = io::ggml_type_name(t->type);
    fmt::print("{:<{}}  {:<7}  {:<{}}  {:>14}\n", t->name, name_width, type, shape_text(t->shape()), shape_width,
               t->nbytes);
    by_type[type] += t->nbytes;
    total += t->nbytes;
    elements += static_cast<uint64_t>(t->elements());
  }
  std::string types;
  for (const auto& [name, bytes] : by_type) types += (types.empty() ? "" : ", ") + name + " " + human_bytes(bytes);
  fmt::print("{} tensors, {} elements, {} ({}); {:.2f} bits per weight\n", tensors.size(), elements, human_bytes(total),
             types, elements ? 8.0 * static_cast<double>(total) / static_cast<double>(elements) : 0.0);
}

int run_info(const std::string& path) {
  recover_directory(path);
  QTUNE_CHECK(fs::exists(path), path, ": no such file or directory");
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    fmt::print("model directory: {}\n", path);
    std::optional<std::string> unbuildable;
    if (fs::exists(dir / "config.json")) {
      unbuildable = print_config(dir / "config.json");
    } else {
      fmt::print("config: none (no config.json)\n");
    }
    print_tokenizer(dir);
    const auto ckpt = io::CheckpointFiles::open(path);
    fmt::print("weights: {} file{}\n", ckpt.files().size(), ckpt.files().size() == 1 ? "" : "s");
    std::vector<const io::TensorEntry*> entries;
    for (const auto& name : ckpt.names()) entries.push_back(&ckpt.entry(name));
    print_tensor_table(entries);
    // The listing is shown either way; the status says whether the directory is a model qtune can use.
    QTUNE_CHECK(!unbuildable, *unbuildable);
    return 0;
  }
  if (io::is_gguf_file(path)) {
    print_gguf(path);
    return 0;
  }
  const auto file = io::SafetensorsFile::open(path);
  fmt::print("safetensors file: {}\n", path);
  for (const auto& [key, value] : file.metadata()) fmt::print("  metadata {} = {}\n", key, value);
  std::vector<const io::TensorEntry*> entries;
  for (const auto& e : file.entries()) entries.push_back(&e);
  print_tensor_table(entries);
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand(
      "info", "Show a model directory's config, tokenizer and tensors, or a safetensors or GGUF file's");
  auto path = std::make_shared<std::string>();
  cmd->add_option("path", *path, "model directory, .safetensors or .gguf file")->required();
  cmd->callback([path, &status] { status = run_info(*path); });
}

}  // namespace qtune::cli
