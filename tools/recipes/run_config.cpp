#include "tools/recipes/run_config.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"
#include "engine/device.h"
#include "engine/io/json_reader.h"

namespace qtune::recipes {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;  // serialized configs list their keys in docs/config.md order
namespace fs = std::filesystem;

constexpr int64_t kMaxCount = 2147483647;

// Calls visit(key, member) for every field of the config, in the order docs/config.md lists them. The
// one table that parsing, serialization, "did you mean" and the docs check all walk.
template <class Config, class Visitor>
void for_each_field(Config& c, Visitor&& visit) {
  visit("recipe", c.recipe);
  visit("device", c.device);
  visit("output_dir", c.output_dir);
  visit("model.path", c.model.path);
  visit("model.config", c.model.config);
  visit("model.tokenizer", c.model.tokenizer);
  visit("model.dtype", c.model.dtype);
  visit("model.master_dtype", c.model.master_dtype);
  visit("model.tf32", c.model.tf32);
  visit("data.train", c.data.train);
  visit("data.eval", c.data.eval);
  visit("data.format", c.data.format);
  visit("data.seq_len", c.data.seq_len);
  visit("data.batch_size", c.data.batch_size);
  visit("data.prompt_template", c.data.prompt_template);
  visit("data.train_on_input", c.data.train_on_input);
  visit("data.pack", c.data.pack);
  visit("data.skip_bad_lines", c.data.skip_bad_lines);
  visit("data.document_separator", c.data.document_separator);
  visit("optim.name", c.optim.name);
  visit("optim.lr", c.optim.lr);
  visit("optim.weight_decay", c.optim.weight_decay);
  visit("optim.betas", c.optim.betas);
  visit("optim.eps", c.optim.eps);
  visit("optim.momentum", c.optim.momentum);
  visit("optim.nesterov", c.optim.nesterov);
  visit("optim.grad_clip", c.optim.grad_clip);
  visit("schedule.name", c.schedule.name);
  visit("schedule.warmup_steps", c.schedule.warmup_steps);
  visit("schedule.min_lr", c.schedule.min_lr);
  visit("train.steps", c.train.steps);
  visit("train.epochs", c.train.epochs);
  visit("train.grad_accum", c.train.grad_accum);
  visit("train.seed", c.train.seed);
  visit("train.activation_checkpointing", c.train.activation_checkpointing);
  visit("train.eval_every", c.train.eval_every);
  visit("train.eval_batches", c.train.eval_batches);
  visit("train.save_every", c.train.save_every);
  visit("train.keep_checkpoints", c.train.keep_checkpoints);
  visit("train.resume", c.train.resume);
  visit("train.log_every", c.train.log_every);
  visit("quant.scheme", c.quant.scheme);
  visit("quant.group_size", c.quant.group_size);
  visit("quant.fake_quant_after_n_steps", c.quant.fake_quant_after_n_steps);
  visit("lora.rank", c.lora.rank);
  visit("lora.alpha", c.lora.alpha);
  visit("lora.dropout", c.lora.dropout);
  visit("lora.targets", c.lora.targets);
  visit("fp8.recipe", c.fp8.recipe);
  visit("dist.timeout_s", c.dist.timeout_s);
  visit("dist.check_calls", c.dist.check_calls);
  visit("dist.sharded_checkpoints", c.dist.sharded_checkpoints);
  visit("dist.offload", c.dist.offload);
  visit("dist.reduce_dtype", c.dist.reduce_dtype);
}

// Input files: relative ones in a config file are resolved against the file's directory.
bool is_input_path(const std::string& key) {
  return key == "model.path" || key == "model.tokenizer" || key == "data.train" || key == "data.eval";
}

// Sections are the prefixes of dotted keys ("model", "data", ...).
std::set<std::string> section_names() {
  std::set<std::string> out;
  for (const std::string& key : run_config_keys()) {
    if (const auto dot = key.find('.'); dot != std::string::npos) out.insert(key.substr(0, dot));
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string last_component(const std::string& key) { return key.substr(key.rfind('.') + 1); }

// " (did you mean optim.lr?)" for the nearest key -- or a key of another section with the same last
// component (`train.lr` -> `optim.lr`) -- or a pointer to the docs when nothing is close.
std::string suggestion(const std::string& key) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : run_config_keys()) {
    const size_t d = last_component(candidate) == last_component(key) ? 1 : edit_distance(key, candidate);
    if (d < best_distance) best = candidate, best_distance = d;
  }
  if (best_distance <= std::max<size_t>(2, key.size() / 3)) return " (did you mean " + best + "?)";
  return " (the keys are listed in docs/config.md)";
}

[[noreturn]] void wrong_type(const std::string& where, const std::string& key, const char* expected, const json& v) {
  io::json_wrong_type(v, key, where, expected);
}

void assign(const std::string& where, const std::string& key, const json& v, std::string& out) {
  out = io::json_string(v, key, where);
}
void assign(const std::string& where, const std::string& key, const json& v, int64_t& out) {
  out = io::json_integer(v, key, where);
}
void assign(const std::string& where, const std::string& key, const json& v, uint64_t& out) {
  if (!v.is_number_unsigned()) wrong_type(where, key, "a non-negative integer", v);
  out = v.get<uint64_t>();
}
void assign(const std::string& where, const std::string& key, const json& v, double& out) {
  out = io::json_number(v, key, where);
}
void assign(const std::string& where, const std::string& key, const json& v, bool& out) {
  out = io::json_boolean(v, key, where);
}
void assign(const std::string& where, const std::string& key, const json& v, std::vector<double>& out) {
  if (!v.is_array()) wrong_type(where, key, "a list of numbers", v);
  std::vector<double> values;
  for (const json& item : v) {
    if (!item.is_number()) wrong_type(where, key, "a list of numbers", v);
    values.push_back(item.get<double>());
  }
  out = std::move(values);
}
void assign(const std::string& where, const std::string& key, const json& v, std::vector<std::string>& out) {
  if (!v.is_array()) wrong_type(where, key, "a list of strings", v);
  std::vector<std::string> values;
  for (const json& item : v) {
    if (!item.is_string()) wrong_type(where, key, "a list of strings", v);
    values.push_back(item.get<std::string>());
  }
  out = std::move(values);
}
void assign(const std::string& where, const std::string& key, const json& v, std::optional<models::LlamaConfig>& out) {
  if (v.is_null()) {
    out.reset();
    return;
  }
  if (!v.is_object()) wrong_type(where, key, "an object (a Hugging Face config.json)", v);
  out = models::parse_llama_config(v.dump(), where + " (" + key + ")");
}
// The typed keys: a name is parsed where it enters; an unknown one is an error naming the key and the
// valid names (the parser's message).
template <class Parse>
auto parse_name(const std::string& where, const std::string& key, const json& v, Parse parse) {
  const std::string name = io::json_string(v, key, where);
  try {
    return parse(name);
  } catch (const Error& e) {
    QTUNE_FAIL(key, " in ", where, ": ", e.what());
  }
}
void assign(const std::string& where, const std::string& key, const json& v, Recipe& out) {
  out = parse_name(where, key, v, [](const std::string& name) { return parse_recipe(name); });
}
// quant.group_size is applied once every key is read (resolve_quant_scheme): the two keys may come in any order.
void assign(const std::string& where, const std::string& key, const json& v, quant::LinearScheme& out) {
  out = parse_name(where, key, v, [](const std::string& name) { return quant::parse_linear_scheme(name); });
}
void assign(const std::string& where, const std::string& key, const json& v, std::optional<quant::Float8Recipe>& out) {
  out = parse_name(where, key, v, [](const std::string& name) -> std::optional<quant::Float8Recipe> {
    if (name.empty()) return std::nullopt;  // "": no float8
    return quant::parse_float8_recipe(name);
  });
}

// Fields whose override value is taken as text unless quoted (output_dir=2024 names a directory).
template <class T>
constexpr bool kTextField =
    std::is_same_v<T, std::string> || std::is_same_v<T, Recipe> || std::is_same_v<T, quant::LinearScheme> ||
    std::is_same_v<T, std::optional<quant::Float8Recipe>>;

ordered_json to_json_value(const std::string& v) { return v; }
ordered_json to_json_value(int64_t v) { return v; }
ordered_json to_json_value(uint64_t v) { return v; }
ordered_json to_json_value(double v) { return v; }
ordered_json to_json_value(bool v) { return v; }
ordered_json to_json_value(const std::vector<double>& v) { return v; }
ordered_json to_json_value(const std::vector<std::string>& v) { return v; }
ordered_json to_json_value(const std::optional<models::LlamaConfig>& v) {
  return v ? ordered_json::parse(models::llama_config_to_json(*v)) : ordered_json();
}
ordered_json to_json_value(Recipe v) { return std::string(recipe_name(v)); }
ordered_json to_json_value(const quant::LinearScheme& v) { return quant::scheme_name(v); }
ordered_json to_json_value(const std::optional<quant::Float8Recipe>& v) {
  return v ? std::string(quant::float8_recipe_name(*v)) : std::string();
}

json::json_pointer pointer_of(const std::string& key) {
  std::string path;
  for (char ch : key) path += ch == '.' ? '/' : ch;
  return json::json_pointer("/" + path);
}

// The keys a config file or its overrides set, whatever their values: a key of a section the recipe does not
// use is an error even when it repeats the default.
using KeysSet = std::set<std::string>;

// Sets `key` from `v` and records it in `set`; false when no field has that name.
bool set_field(RunConfig& c, const std::string& where, const std::string& key, const json& v, KeysSet& set) {
  bool found = false;
  for_each_field(c, [&](const char* name, auto& member) {
    if (key == name) {
      assign(where, key, v, member);
      found = true;
    }
  });
  if (found) set.insert(key);
  return found;
}

void apply_object(RunConfig& c, const json& object, const std::string& prefix, const std::string& where, KeysSet& set) {
  static const std::set<std::string> sections = section_names();
  for (const auto& [name, value] : object.items()) {
    const std::string key = prefix + name;
    if (set_field(c, where, key, value, set)) continue;
    if (prefix.empty() && sections.count(key)) {
      if (!value.is_object()) wrong_type(where, key, "an object (a section of keys)", value);
      apply_object(c, value, key + ".", where, set);
      continue;
    }
    QTUNE_FAIL("unknown key ", key, " in ", where, suggestion(key));
  }
}

// "model.config.hidden_size=64": edits the inline config.json object and parses it again.
void override_inline_model(RunConfig& c, const std::string& where, const std::string& key, const json& v) {
  QTUNE_CHECK(c.model.config.has_value(), key, " in ", where,
              ": there is no inline model.config to change (the model comes from model.path)");
  json object = json::parse(models::llama_config_to_json(*c.model.config));
  object[pointer_of(key.substr(std::string("model.config.").size()))] = v;
  c.model.config = models::parse_llama_config(object.dump(), where);
}

void apply_override(RunConfig& c, const std::string& text, KeysSet& set) {
  const std::string where = "override '" + text + "'";
  const auto eq = text.find('=');
  QTUNE_CHECK(eq != std::string::npos && eq > 0, "bad ", where, ": expected key=value, e.g. optim.lr=1e-4");
  const std::string key = text.substr(0, eq), raw = text.substr(eq + 1);
  // Every value ends up in the run's config.json, which JSON wants in UTF-8: refuse other bytes here.
  if (const size_t bad = data::utf8::first_invalid(text); bad != std::string::npos) {
    QTUNE_FAIL("bad ", data::utf8::lossy(where), ": byte ", bad, " is not valid UTF-8");
  }
  // The value is JSON when it parses as JSON (numbers, true/false, lists, objects); otherwise a string,
  // so paths need no quoting. A string field takes the raw text unless it is a quoted JSON string
  // (output_dir=2024 names a directory).
  json value = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  bool string_field = false;
  for_each_field(c, [&](const char* name, auto& member) {
    if (key == name) string_field = kTextField<std::decay_t<decltype(member)>>;
  });
  if (value.is_discarded() || (string_field && !value.is_string())) value = raw;

  if (key.rfind("model.config.", 0) == 0) return override_inline_model(c, where, key, value);
  if (set_field(c, where, key, value, set)) return;
  if (section_names().count(key)) {
    QTUNE_FAIL(key, " in ", where, " is a section: override one of its keys (", key, ".<name>=value)");
  }
  QTUNE_FAIL("unknown key ", key, " in ", where, suggestion(key));
}

void resolve_input_paths(RunConfig& c, const fs::path& base_dir) {
  for_each_field(c, [&](const char* name, auto& member) {
    if constexpr (std::is_same_v<std::decay_t<decltype(member)>, std::string>) {
      if (is_input_path(name) && !member.empty() && fs::path(member).is_relative()) {
        member = (base_dir / member).lexically_normal().string();
      }
    }
  });
}

void check_one_of(const std::string& where, const char* key, const std::string& value,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += list.empty() ? a : std::string(" | ") + a;
  }
  QTUNE_FAIL(key, " in ", where, " must be one of ", list, ", got \"", value, "\"");
}

template <class T>
void check_at_least(const std::string& where, const char* key, T value, T minimum) {
  QTUNE_CHECK(value >= minimum, key, " in ", where, " must be >= ", minimum, ", got ", value);
}

// quant.scheme with quant.group_size: known only once every key (file and overrides) is read.
void resolve_quant_scheme(QuantSection& quant, const std::string& where) {
  try {
    quant.scheme = quant::parse_linear_scheme(quant::scheme_name(quant.scheme), quant.group_size);
  } catch (const Error& e) {
    QTUNE_FAIL("quant.group_size in ", where, ": ", e.what());
  }
}

// The recipe a command names against the config's own: a config without a `recipe` key takes the command's.
void settle_recipe(RunConfig& c, const std::string& source, bool config_names_recipe, std::optional<Recipe> command) {
  if (!command) return;
  QTUNE_CHECK(!config_names_recipe || c.recipe == *command, source, " is a config for recipe ", recipe_name(c.recipe),
              " (its `recipe` key), not ", recipe_name(*command));
  c.recipe = *command;
}

void validate(const RunConfig& c, const std::string& where, const KeysSet& set) {
  Device device;
  try {
    device = parse_device(c.device);
  } catch (const Error& e) {
    QTUNE_FAIL("device in ", where, ": ", e.what());
  }
  QTUNE_CHECK(!c.output_dir.empty(), "output_dir in ", where, " is empty: name the run's directory");

  QTUNE_CHECK(c.model.path.empty() != !c.model.config.has_value(), "model in ", where,
              ": give exactly one of model.path (a Hugging Face model directory or a GGUF file to fine-tune) and "
              "model.config (an "
              "inline config.json object to train from scratch)");
  QTUNE_CHECK(!c.model.path.empty() || !c.model.tokenizer.empty(), "model.tokenizer in ", where,
              " is required with an inline model.config (a tokenizer.model / tokenizer.json file or a directory)");
  check_one_of(where, "model.dtype", c.model.dtype, {"f32", "bf16"});
  if (!c.model.master_dtype.empty()) {
    check_one_of(where, "model.master_dtype", c.model.master_dtype, {"f32", "bf16"});
    QTUNE_CHECK(c.model.master_dtype == "f32" || c.model.dtype == "bf16", "model.master_dtype in ", where, " is ",
                c.model.master_dtype, ", narrower than model.dtype=", c.model.dtype,
                ": the optimizer's masters hold at least the compute precision (leave it unset, or f32)");
  }
  QTUNE_CHECK(!c.model.tf32 || (!device.is_cpu() && c.model.dtype == "f32"), "model.tf32 in ", where,
              " applies to f32 models on device=cuda (TF32 is the tensor cores' f32 input format), not model.dtype=",
              c.model.dtype, " on device=", c.device);

  QTUNE_CHECK(c.dist.timeout_s > 0 && c.dist.timeout_s <= 86400, "dist.timeout_s in ", where,
              " must be in (0, 86400] seconds, got ", c.dist.timeout_s);
  QTUNE_CHECK(!c.dist.offload || !device.is_cpu(), "dist.offload in ", where,
              " keeps GPU ranks' shards and optimizer state in host memory; this run trains on device=", c.device,
              ", where they are there already: drop it");
  if (!c.dist.reduce_dtype.empty()) {
    check_one_of(where, "dist.reduce_dtype", c.dist.reduce_dtype, {"f32"});
    QTUNE_CHECK(c.model.dtype != "f32", "dist.reduce_dtype=f32 in ", where,
                " sums a bf16 model's gradients across ranks in f32; this model is f32 already: drop it");
  }

  QTUNE_CHECK(!c.data.train.empty(), "data.train in ", where, " is empty: name the training data file or directory");
  check_one_of(where, "data.format", c.data.format, {"text", "jsonl", "tokens"});
  check_at_least<int64_t>(where, "data.seq_len", c.data.seq_len, 1);
  check_at_least<int64_t>(where, "data.batch_size", c.data.batch_size, 1);
  check_one_of(where, "data.prompt_template", c.data.prompt_template, {"alpaca", "chat"});

  check_one_of(where, "optim.name", c.optim.name, {"adamw", "sgd"});
  check_at_least(where, "optim.lr", c.optim.lr, 0.0);
  check_at_least(where, "optim.weight_decay", c.optim.weight_decay, 0.0);
  QTUNE_CHECK(c.optim.betas.size() == 2 && c.optim.betas[0] >= 0 && c.optim.betas[0] < 1 && c.optim.betas[1] >= 0 &&
                  c.optim.betas[1] < 1,
              "optim.betas in ", where, " must be two numbers in [0, 1), e.g. [0.9, 0.95]");
  QTUNE_CHECK(c.optim.eps > 0, "optim.eps in ", where, " must be > 0, got ", c.optim.eps);
  check_at_least(where, "optim.momentum", c.optim.momentum, 0.0);
  check_at_least(where, "optim.grad_clip", c.optim.grad_clip, 0.0);

  check_one_of(where, "schedule.name", c.schedule.name, {"constant", "linear", "cosine"});
  check_at_least<int64_t>(where, "schedule.warmup_steps", c.schedule.warmup_steps, 0);
  check_at_least(where, "schedule.min_lr", c.schedule.min_lr, 0.0);

  check_at_least<int64_t>(where, "train.steps", c.train.steps, 0);
  check_at_least(where, "train.epochs", c.train.epochs, 0.0);
  QTUNE_CHECK(c.train.steps > 0 || c.train.epochs > 0, "train in ", where,
              ": set train.steps (optimizer steps) or train.epochs (passes over data.train)");
  check_at_least<int64_t>(where, "train.grad_accum", c.train.grad_accum, 1);
  check_at_least<int64_t>(where, "train.eval_every", c.train.eval_every, 0);
  check_at_least<int64_t>(where, "train.eval_batches", c.train.eval_batches, 0);
  check_at_least<int64_t>(where, "train.save_every", c.train.save_every, 0);
  check_at_least<int64_t>(where, "train.keep_checkpoints", c.train.keep_checkpoints, 1);
  check_at_least<int64_t>(where, "train.log_every", c.train.log_every, 1);

  const bool qat = fake_quantizes(c.recipe);
  check_at_least<int64_t>(where, "quant.fake_quant_after_n_steps", c.quant.fake_quant_after_n_steps, 0);
  const auto first_set = [&](const std::string& section) -> std::optional<std::string> {
    for (const std::string& key : set) {
      if (key.rfind(section, 0) == 0) return key;
    }
    return std::nullopt;
  };
  if (const auto key = first_set("quant."); key && !qat) {
    QTUNE_FAIL(*key, " in ", where, " configures the qat and qat_lora recipes; this config's recipe is ",
               recipe_name(c.recipe), " (run `qtune run qat`, or drop the quant keys)");
  }
  const bool lora = trains_adapters(c.recipe);
  check_at_least<int64_t>(where, "lora.rank", c.lora.rank, 1);
  QTUNE_CHECK(c.lora.alpha > 0, "lora.alpha in ", where, " must be > 0, got ", c.lora.alpha);
  QTUNE_CHECK(c.lora.dropout >= 0 && c.lora.dropout < 1, "lora.dropout in ", where, " must be in [0, 1), got ",
              c.lora.dropout);
  QTUNE_CHECK(!c.lora.targets.empty(), "lora.targets in ", where,
              " is empty: name at least one module, e.g. [\"q_proj\", \"v_proj\"]");
  for (const std::string& target : c.lora.targets) {
    check_one_of(where, "lora.targets", target,
                 {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"});
  }
  if (const auto key = first_set("lora."); key && !lora) {
    QTUNE_FAIL(*key, " in ", where, " configures the lora, qlora and qat_lora recipes; this config's recipe is ",
               recipe_name(c.recipe), " (run `qtune run lora`, or drop the lora keys)");
  }
  // Counts past 2^31 are typos (and some reach 32-bit kernels' arguments): refuse rather than wrap or allocate.
  for_each_field(c, [&](const char* name, const auto& member) {
    if constexpr (std::is_same_v<std::decay_t<decltype(member)>, int64_t>) {
      QTUNE_CHECK(member <= kMaxCount, name, " in ", where, " must be at most ", kMaxCount, ", got ", member);
    }
  });
  QTUNE_CHECK(!c.fp8.recipe || c.recipe != Recipe::qlora, "fp8.recipe in ", where,
              ": the qlora base is NF4; a float8 base with LoRA adapters is recipe lora with fp8.recipe");
  QTUNE_CHECK(!c.fp8.recipe || !qat, "fp8.recipe in ", where, ": float8 training and QAT (recipe ",
              recipe_name(c.recipe), ") do not combine; the linears are either fake-quantized or cast through fp8");
}

RunConfig parse(const json& root, const std::string& source, const fs::path* base_dir,
                const std::vector<std::string>& overrides, std::optional<Recipe> command_recipe) {
  QTUNE_CHECK(root.is_object(), source, ": a run config is a JSON object, got ", root.type_name());
  RunConfig c;
  KeysSet set;
  apply_object(c, root, "", source, set);
  if (base_dir != nullptr) resolve_input_paths(c, *base_dir);
  for (const std::string& o : overrides) apply_override(c, o, set);
  const bool names_recipe = root.contains("recipe") || std::any_of(overrides.begin(), overrides.end(),
                                                                   [](auto& o) { return o.rfind("recipe=", 0) == 0; });
  settle_recipe(c, source, names_recipe, command_recipe);
  const std::string where = overrides.empty() ? source : source + " with its overrides";
  resolve_quant_scheme(c.quant, where);
  validate(c, where, set);
  return c;
}

}  // namespace

std::vector<std::string> run_config_keys() {
  std::vector<std::string> keys;
  RunConfig c;
  for_each_field(c, [&](const char* name, auto&) { keys.emplace_back(name); });
  return keys;
}

bool is_run_config_input_path(const std::string& key) { return is_input_path(key); }

bool applies(Recipe recipe, const std::string& key) {
  if (key.rfind("quant.", 0) == 0) return fake_quantizes(recipe);
  if (key.rfind("lora.", 0) == 0) return trains_adapters(recipe);
  return true;
}

bool keeps_f32_masters(const RunConfig& config) {
  return config.model.master_dtype == "f32" && config.model.dtype != "f32";
}

RunConfig parse_run_config(const std::string& json_text, const std::string& source,
                           const std::vector<std::string>& overrides, std::optional<Recipe> command_recipe) {
  return parse(io::parse_json(json_text, source), source, nullptr, overrides, command_recipe);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                          std::optional<Recipe> command_recipe) {
  QTUNE_CHECK(fs::is_regular_file(path), "run config ", path, " not found");
  const fs::path base_dir = fs::path(path).parent_path();
  return parse(io::read_json_file(path), path, &base_dir, overrides, command_recipe);
}

std::string run_config_to_json(const RunConfig& config) {
  QTUNE_CHECK(quant::parse_linear_scheme(quant::scheme_name(config.quant.scheme), config.quant.group_size) ==
                  config.quant.scheme,
              "run_config_to_json: quant.scheme ", quant::scheme_name(config.quant.scheme), " with ",
              quant::group_size_of(config.quant.scheme), " weights per scale does not match quant.group_size ",
              config.quant.group_size, " (0: the scheme's default); set both");
  ordered_json out = ordered_json::object();
  for_each_field(config, [&](const char* name, const auto& member) {
    if (!applies(config.recipe, name)) return;  // so that the file parses again as the same config
    ordered_json value = to_json_value(member);
    if (!value.is_null()) out[pointer_of(name)] = std::move(value);
  });
  return out.dump(2);
}

}  // namespace qtune::recipes
