#include "tools/recipes/resume_check.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/check.h"

namespace qtune::recipes {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

bool may_change(const std::string& key) {
  static const std::set<std::string> keys = {"device",
                                             "output_dir",
                                             "train.steps",
                                             "train.epochs",
                                             "train.eval_every",
                                             "train.eval_batches",
                                             "train.save_every",
                                             "train.keep_checkpoints",
                                             "train.resume",
                                             "train.log_every",
                                             "train.activation_checkpointing",
                                             "dist.timeout_s",
                                             "dist.check_calls",
                                             "dist.sharded_checkpoints",
                                             "dist.offload"};
  return keys.count(key) > 0;
}

json at(const json& config, const std::string& key) {
  std::string pointer = "/" + key;
  for (char& ch : pointer) ch = ch == '.' ? '/' : ch;
  const json::json_pointer p(pointer);
  return config.contains(p) ? config.at(p) : json();
}

std::string same_file_spelling(const json& path) {
  if (!path.is_string() || path.get<std::string>().empty()) return "";
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(fs::absolute(path.get<std::string>()), ec);
  return ec ? path.get<std::string>() : canonical.string();
}

struct Difference {
  std::string suffix;  // ".hidden_size" inside an object, else empty
  json there, now;
};

// Where two JSON values differ: the first differing leaf of two objects, or the values themselves.
Difference first_difference(const json& a, const json& b) {
  if (!a.is_object() || !b.is_object()) return {"", a, b};
  const json fa = a.flatten(), fb = b.flatten();
  std::set<std::string> pointers;
  for (const auto& [p, v] : fa.items()) pointers.insert(p);
  for (const auto& [p, v] : fb.items()) pointers.insert(p);
  for (const std::string& p : pointers) {
    const json va = fa.value(p, json()), vb = fb.value(p, json());
    if (va == vb) continue;
    std::string dotted = p;
    for (char& ch : dotted) ch = ch == '/' ? '.' : ch;
    return {dotted, va, vb};
  }
  return {"", a, b};
}

}  // namespace

void check_resume_compatible(const RunConfig& current, int64_t ranks, const std::string& saved_config_json,
                             int64_t saved_ranks, const std::string& checkpoint_dir) {
  const json saved = json::parse(saved_config_json), now = json::parse(run_config_to_json(current));
  // A key added after the checkpoint was written is absent from its config: it ran with that key's default.
  RunConfig defaults;
  defaults.recipe = current.recipe;
  const json fallback = json::parse(run_config_to_json(defaults));
  const auto saved_value = [&](const std::string& key) {
    const json v = at(saved, key);
    return v.is_null() ? at(fallback, key) : v;
  };
  // model.master_dtype unset means "as model.dtype": compare what each run's optimizer updates.
  const auto effective = [](const json& config_value, const json& master) {
    return master.is_string() && !master.get<std::string>().empty() ? master : at(config_value, "model.dtype");
  };
  for (const std::string& key : run_config_keys()) {
    if (may_change(key) || !applies(current.recipe, key)) continue;  // the recipes are compared: same for both
    if (key == "train.grad_accum") {
      const int64_t there = saved_value(key).get<int64_t>(), here = current.train.grad_accum;
      if (there * saved_ranks == here * ranks) continue;
      QTUNE_FAIL("cannot resume from ", checkpoint_dir, ": its steps took ", there * saved_ranks, " batches (",
                 saved_ranks, " rank(s) x train.grad_accum ", there, "), this run's take ", here * ranks, " (", ranks,
                 " x ", here, "); ",
                 (there * saved_ranks) % ranks == 0
                     ? "set train.grad_accum=" + std::to_string(there * saved_ranks / ranks)
                     : "run with a number of ranks that divides " + std::to_string(there * saved_ranks),
                 " to continue it");
    }
    json a = saved_value(key), b = at(now, key);
    if (key == "model.master_dtype") {
      a = effective(saved, a);
      b = effective(now, b);
    }
    if (is_run_config_input_path(key) ? same_file_spelling(a) == same_file_spelling(b) : a == b) continue;
    const Difference d = first_difference(a, b);
    QTUNE_FAIL("cannot resume from ", checkpoint_dir, ": ", key, d.suffix, " differs from the checkpoint's (",
               d.there.dump(), " there, ", d.now.dump(), " now); resume with the checkpoint's value, or start a new ",
               "output_dir");
  }
}

}  // namespace qtune::recipes
