#include "tools/recipes/trainer_state.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/io/json_reader.h"

namespace qtune::recipes {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kStateVersion = 1;

// A non-negative integer field (the RNG state is u64).
uint64_t unsigned_field(const io::JsonFields& f, const char* key) {
  const json& v = f.required(key);
  if (!v.is_number_unsigned()) f.wrong_type(key, "a non-negative integer", v);
  return v.get<uint64_t>();
}

int64_t count_field(const io::JsonFields& f, const char* key) {
  const int64_t value = f.integer(key);
  f.expect(value >= 0, key, "must be >= 0, got " + std::to_string(value));
  return value;
}

}  // namespace

std::string trainer_state_to_json(const TrainerState& s) {
  json out;
  out["format"] = "qtune trainer state";
  out["version"] = kStateVersion;
  out["step"] = s.step;
  out["total_steps"] = s.total_steps;
  out["data_position"] = {{"epoch", s.data.epoch}, {"sequence", s.data.sequence}};
  out["rng"] = {{"seed", s.rng_seed}, {"offset", s.rng_offset}};
  out["optimizer"] = s.optimizer_scalars;
  out["elapsed_s"] = s.elapsed_s;
  out["loss"] = s.loss;
  out["eval_step"] = s.eval_step;
  out["eval_loss"] = std::isnan(s.eval_loss) ? json() : json(s.eval_loss);
  out["config"] = json::parse(s.config_json);
  out["ranks"] = s.ranks;
  out["data_fingerprints"] = s.data_fingerprints;
  return out.dump(2) + "\n";
}

namespace {

TrainerState from_json(const json& j, const std::string& source) {
  const io::JsonFields f(j, source);
  const int64_t version = f.integer("version");
  f.expect(
      version == kStateVersion, "version",
      "is " + std::to_string(version) + ": this qtune reads trainer state version " + std::to_string(kStateVersion));
  TrainerState s;
  s.step = count_field(f, "step");
  s.total_steps = count_field(f, "total_steps");
  const io::JsonFields position = f.object("data_position");
  s.data.epoch = count_field(position, "epoch");
  s.data.sequence = count_field(position, "sequence");
  const io::JsonFields rng = f.object("rng");
  s.rng_seed = unsigned_field(rng, "seed");
  s.rng_offset = unsigned_field(rng, "offset");
  const io::JsonFields optimizer = f.object("optimizer");
  for (const auto& [name, value] : optimizer.json().items())
    s.optimizer_scalars[name] = optimizer.as_number(value, name);
  s.elapsed_s = f.number("elapsed_s");
  s.loss = f.number("loss");
  s.eval_step = count_field(f, "eval_step");
  s.eval_loss = f.number("eval_loss", std::numeric_limits<double>::quiet_NaN());  // null: no eval data
  s.config_json = f.object("config").json().dump(2);
  if (f.has("ranks")) {  // absent in states saved before FSDP: one process
    s.ranks = count_field(f, "ranks");
    f.expect(s.ranks >= 1, "ranks", "must be at least 1");
  }
  if (f.has("data_fingerprints")) {
    const io::JsonFields prints = f.object("data_fingerprints");
    for (const auto& [key, value] : prints.json().items()) s.data_fingerprints[key] = prints.string(key);
  }
  return s;
}

}  // namespace

TrainerState parse_trainer_state(const std::string& json_text, const std::string& source) {
  return from_json(io::parse_json(json_text, source), source);
}

TrainerState read_trainer_state(const std::string& checkpoint_dir) {
  const std::string file = (fs::path(checkpoint_dir) / "trainer_state.json").string();
  QTUNE_CHECK(fs::is_regular_file(file), file, " not found: ", checkpoint_dir, " is not a complete checkpoint");
  return from_json(io::read_json_file(file), file);
}

}  // namespace qtune::recipes
