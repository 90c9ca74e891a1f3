#include "tools/recipes/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <utility>
#include <vector>

#include "data/tokenizer.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/gguf_file.h"
#include "engine/io/safetensors.h"
#include "engine/io/staged_directory.h"
#include "models/hf_checkpoint.h"
#include "models/llama_config.h"

namespace qtune::recipes {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOptimizerFile = "optimizer.safetensors";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in, "cannot read ", path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A tokenizer directory contributes the files load_tokenizer reads (and their HF companions); a single
// file is stored under the name load_tokenizer looks for; a GGUF file's embedded tokenizer is written out.
void copy_tokenizer_files(const std::string& source, const fs::path& dir) {
  const auto copy = [&](const fs::path& from, const char* name) {
    io::write_file_atomic((dir / name).string(), read_file(from));
  };
  if (io::is_gguf_file(source)) {
    data::load_tokenizer(source)->save(dir.string());  // the tokenizer the GGUF file embeds, as files of its own
  } else if (fs::is_directory(source)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
      if (fs::is_regular_file(fs::path(source) / name)) copy(fs::path(source) / name, name);
    }
  } else {
    copy(source, fs::path(source).extension() == ".json" ? "tokenizer.json" : "tokenizer.model");
  }
}

void write_model_files(models::Llama& model, const std::string& tokenizer_source, const fs::path& dir,
                       const WeightsWriter& write_weights, const models::TensorReader& read) {
  if (write_weights) {
    write_weights(model, dir.string(), read);
  } else {
    models::SaveOptions options;  // in the model's dtype: a resumed run gets the same bits
    options.read = read;
    models::save_llama(model, dir.string(), options);
  }
  copy_tokenizer_files(tokenizer_source, dir);
}

std::optional<int64_t> step_of_dir_name(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5 || name.size() > 5 + 18) return std::nullopt;
  const std::string digits = name.substr(5);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(digits);
}

// Complete checkpoints, newest first: a step_<N> directory whose trainer_state.json parses and says N.
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  const fs::path root = fs::path(output_dir) / "checkpoints";
  if (!fs::is_directory(root)) return out;
  for (const auto& entry : fs::directory_iterator(root)) {
    const auto step = step_of_dir_name(entry.path().filename().string());
    if (!step || !entry.is_directory()) continue;
    try {
      if (read_trainer_state(entry.path().string()).step == *step) out.emplace_back(*step, entry.path());
    } catch (const std::exception&) {
      // Incomplete or damaged: not a candidate.
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, models::Llama& model, const std::string& tokenizer_source,
                            const optim::OptimizerState& optimizer_state, const TrainerState& state,
                            const WeightsWriter& write_weights, const models::ShardedLlama::WholeReader* sharded) {
  const fs::path dir = fs::path(output_dir) / "checkpoints" / ("step_" + std::to_string(state.step));
  TrainerState full = state;
  full.optimizer_scalars = optimizer_state.scalars;
  io::write_directory_atomic(dir, [&](const fs::path& tmp) {
    write_model_files(model, tokenizer_source, tmp, write_weights, sharded ? sharded->weight : nullptr);
    std::vector<io::LazyTensor> tensors;
    for (const auto& [key, t] : optimizer_state.tensors)
      tensors.push_back(sharded ? sharded->optimizer_state(key)
                                : io::LazyTensor{{key, t.dtype(), t.shape()}, [t = t] { return t; }});
    io::save_safetensors((tmp / kOptimizerFile).string(), tensors, {{"format", "pt"}});
    io::write_file_atomic((tmp / "trainer_state.json").string(), trainer_state_to_json(full));  // last: complete
  });
  return dir.string();
}

std::string save_sharded_checkpoint(const std::string& output_dir, models::Llama& model,
                                    const std::string& tokenizer_source, const std::string& shards_dir,
                                    const std::map<std::string, double>& optimizer_scalars, const TrainerState& state) {
  const fs::path dir = fs::path(output_dir) / "checkpoints" / ("step_" + std::to_string(state.step));
  TrainerState full = state;
  full.optimizer_scalars = optimizer_scalars;
  io::write_directory_atomic(dir, [&](const fs::path& tmp) {
    fs::rename(shards_dir, tmp / "shards");
    io::write_file_atomic((tmp / "config.json").string(), models::llama_config_to_json(model.config()));
    copy_tokenizer_files(tokenizer_source, tmp);
    io::write_file_atomic((tmp / "trainer_state.json").string(), trainer_state_to_json(full));  // last: complete
  });
  return dir.string();
}

std::optional<std::string> latest_checkpoint(const std::string& output_dir) {
  const auto all = complete_checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.front().second.string();
}

void prune_checkpoints(const std::string& output_dir, int64_t keep) {
  const auto all = complete_checkpoints(output_dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 0)); i < all.size(); ++i) fs::remove_all(all[i].second);
  // Ranks' files of a sharded save that a killed run left (a finished save moved its own into the checkpoint).
  const fs::path root = fs::path(output_dir) / "checkpoints";
  if (!fs::is_directory(root)) return;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".step_", 0) == 0 && name.size() > 7 && name.ends_with(".shards")) fs::remove_all(entry.path());
  }
}

optim::OptimizerState read_optimizer_state(const std::string& checkpoint_dir, const TrainerState& state) {
  const auto file = io::SafetensorsFile::open((fs::path(checkpoint_dir) / kOptimizerFile).string());
  optim::OptimizerState out;
  out.scalars = state.optimizer_scalars;
  // Views of the mapping (which they keep alive): Optimizer::load_state copies them onto the parameters' devices.
  for (const io::TensorEntry& e : file.entries()) out.tensors[e.name] = file.tensor(e.name);
  return out;
}

void save_model_dir(models::Llama& model, const std::string& tokenizer_source, const std::string& dir,
                    const WeightsWriter& write_weights, const models::TensorReader& read) {
  io::write_directory_atomic(
      dir, [&](const fs::path& tmp) { write_model_files(model, tokenizer_source, tmp, write_weights, read); });
}

}  // namespace qtune::recipes
