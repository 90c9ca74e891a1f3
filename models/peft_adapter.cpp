#include "models/peft_adapter.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/json_reader.h"
#include "engine/io/safetensors.h"

namespace qtune::models {
namespace {

namespace fs = std::filesystem;
using io::Json;

constexpr std::string_view kPrefix = "base_model.model.";
constexpr std::string_view kA = ".lora_A.weight", kB = ".lora_B.weight";

std::string config_path(const std::string& dir) { return (fs::path(dir) / "adapter_config.json").string(); }
std::string weights_path(const std::string& dir) { return (fs::path(dir) / "adapter_model.safetensors").string(); }

// A module the adapter is expected to fill: its shape and the rank/alpha it has or will get.
struct Slot {
  int64_t in, out, rank;
  double alpha;
};

// The LoRA modules of `model` as they are, or, for a model without LoRA, as apply_lora(config) would
// make them (without touching the model).
std::map<std::string, Slot> planned_slots(Llama& model, const LoraConfig& config, const std::string& file) {
  std::map<std::string, Slot> slots;
  const auto existing = lora_modules(model);
  if (!existing.empty()) {
    for (const auto& [fqn, lora] : existing)
      slots[fqn] = Slot{lora->in_features(), lora->out_features(), lora->rank(), lora->alpha()};
    return slots;
  }
  const std::set<std::string> targets(config.targets.begin(), config.targets.end());
  for (const auto& [fqn, m] : model.named_modules()) {
    if (!targets.count(std::string(split_name(fqn).leaf))) continue;
    const auto features = lora_base_features(*m);
    QTUNE_CHECK(features.has_value(), file, ": target module ", fqn, " is a ", m->type_name(),
                ", which LoRA cannot wrap");
    slots[fqn] = Slot{features->first, features->second, config.rank, config.alpha};
  }
  return slots;
}

// Each problem once, in the order found: a module-level mismatch is reported by both of its tensors.
class Problems {
 public:
  void add(std::string p) {
    if (seen_.insert(p).second) list_.push_back(std::move(p));
  }
  [[noreturn]] void fail(const std::string& file) const {
    std::ostringstream out;
    out << file << ": the adapter does not fit the model:";
    const size_t shown = std::min<size_t>(list_.size(), 12);
    for (size_t i = 0; i < shown; ++i) out << "\n  " << list_[i];
    if (list_.size() > shown) out << "\n  ... (" << list_.size() - shown << " more)";
    QTUNE_FAIL(out.str());
  }
  bool empty() const { return list_.empty(); }

 private:
  std::vector<std::string> list_;
  std::set<std::string> seen_;
};

void check_fits(const io::SafetensorsFile& file, const std::map<std::string, Slot>& slots, const LoraConfig& config) {
  Problems problems;
  std::map<std::string, int> seen;  // module -> bit 1: lora_A, bit 2: lora_B
  for (const io::TensorEntry& e : file.entries()) {
    const std::string& key = e.name;
    const bool is_a = key.ends_with(kA), is_b = key.ends_with(kB);
    if (key.ends_with(".base_layer.weight")) {
      problems.add("tensor " + key + " is a whole base weight (peft's save_embedding_layers); qtune adapters " +
                   "hold only lora_A/lora_B (hint: save with save_embedding_layers=False)");
      continue;
    }
    if (!key.starts_with(kPrefix) || (!is_a && !is_b)) {
      problems.add("unexpected tensor " + key +
                   " (expected base_model.model.<module>.lora_A.weight or .lora_B.weight)");
      continue;
    }
    const std::string fqn = key.substr(kPrefix.size(), key.size() - kPrefix.size() - kA.size());
    const auto it = slots.find(fqn);
    if (it == slots.end()) {
      problems.add("module " + fqn + " has adapter tensors but is not a LoRA target of the model");
      continue;
    }
    const auto dtype = io::to_dtype(e.dtype);
    if (!dtype || !is_floating(*dtype))
      problems.add("tensor " + key + " has dtype " + std::string(io::st_dtype_name(e.dtype)) + ", not a floating type");
    const Slot& s = it->second;
    if (s.rank != config.rank)
      problems.add("module " + fqn + " has LoRA rank " + std::to_string(s.rank) +
                   ", the adapter has r = " + std::to_string(config.rank));
    else if (s.alpha != config.alpha)
      problems.add("module " + fqn + " has LoRA alpha " + std::to_string(s.alpha) +
                   ", the adapter has lora_alpha = " + std::to_string(config.alpha));
    const Shape want = is_a ? Shape{config.rank, s.in} : Shape{s.out, config.rank};
    if (e.shape != want) {
      const bool rank_off = e.shape.size() == 2 && (is_a ? e.shape[0] : e.shape[1]) != config.rank;
      problems.add("tensor " + key + " has shape " + shape_str(e.shape) + ", module " + fqn + " expects " +
                   shape_str(want) + (rank_off ? " (rank differs from the adapter's r)" : " (in/out features differ)"));
    }
    seen[fqn] |= is_a ? 1 : 2;
  }
  for (const auto& [fqn, slot] : slots) {
    const int have = seen.count(fqn) ? seen.at(fqn) : 0;
    if (!(have & 1)) problems.add("missing tensor " + std::string(kPrefix) + fqn + std::string(kA));
    if (!(have & 2)) problems.add("missing tensor " + std::string(kPrefix) + fqn + std::string(kB));
  }
  if (!problems.empty()) problems.fail(file.path());
}

}  // namespace

void save_adapter(Llama& model, const LoraConfig& config, const std::string& dir, const std::string& base_model_name,
                  const TensorReader& read) {
  const auto modules = lora_modules(model);
  QTUNE_CHECK(!modules.empty(), "save_adapter(", dir, "): the model has no LoRA modules (hint: apply_lora first)");
  std::vector<io::LazyTensor> tensors;  // read one at a time, as the writer reaches them
  for (const auto& [fqn, lora] : modules) {
    QTUNE_CHECK(lora->rank() == config.rank && lora->alpha() == config.alpha, "save_adapter(", dir, "): module ", fqn,
                " has rank ", lora->rank(), " and alpha ", lora->alpha(), " but the config says rank ", config.rank,
                " and alpha ", config.alpha);
    QTUNE_CHECK(std::find(config.targets.begin(), config.targets.end(), split_name(fqn).leaf) != config.targets.end(),
                "save_adapter(", dir, "): module ", fqn, " has LoRA but '", split_name(fqn).leaf,
                "' is not in the config's targets");
    for (const auto& [suffix, t] : {std::pair{kA, lora->lora_a()}, std::pair{kB, lora->lora_b()}}) {
      tensors.push_back({{std::string(kPrefix) + fqn + std::string(suffix), t.dtype(), t.shape()},
                         [&read, t = t] { return read_tensor(read, t).detach(); }});
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  QTUNE_CHECK(!ec, "save_adapter: cannot create directory ", dir, ": ", ec.message());

  Json cfg;
  cfg["peft_type"] = "LORA";
  cfg["task_type"] = "CAUSAL_LM";
  cfg["base_model_name_or_path"] = base_model_name;
  cfg["r"] = config.rank;
  // PEFT types lora_alpha as an int; keep integral values integral so peft reads back the same config.
  if (std::floor(config.alpha) == config.alpha && std::fabs(config.alpha) < 1e15)
    cfg["lora_alpha"] = static_cast<int64_t>(config.alpha);
  else
    cfg["lora_alpha"] = config.alpha;
  cfg["lora_dropout"] = config.dropout;
  cfg["target_modules"] = config.targets;
  cfg["bias"] = "none";
  cfg["fan_in_fan_out"] = false;
  cfg["use_rslora"] = false;
  cfg["use_dora"] = false;
  cfg["inference_mode"] = true;
  io::save_safetensors(weights_path(dir), tensors, {{"format", "pt"}});
  io::write_file_atomic(config_path(dir), cfg.dump(2) + "\n");
}

void load_adapter(Llama& model, const std::string& dir) {
  const LoraConfig config = load_adapter_config(dir);
  const io::SafetensorsFile file = io::SafetensorsFile::open(weights_path(dir));
  const bool fresh = lora_modules(model).empty();
  if (fresh) {
    // apply_lora's own target checks (unknown names, a tied lm_head) run before anything is planned.
    const auto& valid = lora_target_names();
    for (const std::string& t : config.targets)
      QTUNE_CHECK(std::find(valid.begin(), valid.end(), t) != valid.end(), config_path(dir), ": target module '", t,
                  "' is not one qtune's Llama has (valid: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                  "down_proj, lm_head)");
    const bool head = std::find(config.targets.begin(), config.targets.end(), "lm_head") != config.targets.end();
    QTUNE_CHECK(!(head && model.config().tie_word_embeddings), config_path(dir),
                ": target module 'lm_head' but the model ties lm_head to embed_tokens (tie_word_embeddings)");
  }
  check_fits(file, planned_slots(model, config, file.path()), config);
  if (fresh) apply_lora(model, config);
  NoGradGuard no_grad;
  for (const auto& [fqn, lora] : lora_modules(model)) {
    lora->lora_a().copy_(file.tensor(std::string(kPrefix) + fqn + std::string(kA)));
    lora->lora_b().copy_(file.tensor(std::string(kPrefix) + fqn + std::string(kB)));
  }
}

}  // namespace qtune::models
