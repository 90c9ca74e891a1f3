#include "engine/io/checkpoint_files.h"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint_index.h"
#include "engine/io/json_reader.h"

namespace fs = std::filesystem;

namespace qtune::io {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

// "model-DDDDD-of-DDDDD.safetensors", the names save_checkpoint_files gives shards.
bool is_shard_name(std::string_view name) {
  constexpr std::string_view pattern = "model-#####-of-#####.safetensors";
  if (name.size() != pattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const bool ok = pattern[i] == '#' ? std::isdigit(static_cast<unsigned char>(name[i])) != 0 : name[i] == pattern[i];
    if (!ok) return false;
  }
  return true;
}

}  // namespace

CheckpointFiles CheckpointFiles::open(const std::string& dir) {
  CheckpointFiles ckpt;
  ckpt.dir_ = dir;
  const fs::path index_path = fs::path(dir) / kIndexFile;
  const fs::path single_path = fs::path(dir) / kSingleFile;
  if (fs::exists(index_path)) {
    const std::string index_label = index_path.string();
    const std::map<std::string, std::string> listed = read_checkpoint_index(index_label);  // tensor -> shard file
    std::map<std::string, size_t> shard_of_file;
    for (const auto& [tensor, name] : listed) {
      if (!shard_of_file.count(name)) {
        shard_of_file[name] = ckpt.files_.size();
        ckpt.files_.push_back(SafetensorsFile::open((fs::path(dir) / name).string()));
      }
    }
    for (const auto& [file, i] : shard_of_file) {
      for (const auto& e : ckpt.files_[i].entries()) {
        const auto it = listed.find(e.name);
        QTUNE_CHECK(it != listed.end(), index_label, ": shard ", file, " holds \"", e.name,
                    "\", which the weight_map does not list");
        QTUNE_CHECK(it->second == file, index_label, ": \"", e.name, "\" is listed in ", it->second,
                    " but also stored in ", file);
        ckpt.where_[e.name] = i;
      }
    }
    for (const auto& [tensor, file] : listed) {
      QTUNE_CHECK(ckpt.where_.count(tensor), index_label, ": weight_map puts \"", tensor, "\" in ", file,
                  ", which does not hold it");
    }
  } else if (fs::exists(single_path)) {
    ckpt.files_.push_back(SafetensorsFile::open(single_path.string()));
    for (const auto& e : ckpt.files_[0].entries()) ckpt.where_[e.name] = 0;
  } else {
    QTUNE_CHECK(fs::is_directory(dir), dir, ": no such directory");
    QTUNE_FAIL(dir, ": holds neither ", kSingleFile, " nor ", kIndexFile);
  }
  return ckpt;
}

std::vector<std::string> CheckpointFiles::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

bool CheckpointFiles::contains(std::string_view name) const { return where_.find(name) != where_.end(); }

const SafetensorsFile& CheckpointFiles::file_of(std::string_view name) const {
  const auto it = where_.find(name);
  QTUNE_CHECK(it != where_.end(), dir_, ": the checkpoint has no tensor named \"", name, "\"");
  return files_[it->second];
}

const TensorEntry& CheckpointFiles::entry(std::string_view name) const { return file_of(name).at(name); }

Tensor CheckpointFiles::tensor(std::string_view name) const { return file_of(name).tensor(name); }

void CheckpointFiles::release(std::string_view name) const {
  const SafetensorsFile& file = file_of(name);
  file.release(file.at(name));
}

uint64_t CheckpointFiles::total_bytes() const {
  uint64_t total = 0;
  for (const auto& f : files_) {
    for (const auto& e : f.entries()) total += e.nbytes();
  }
  return total;
}

void save_checkpoint_files(const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
                           const SaveCheckpointOptions& options) {
  save_checkpoint_files(dir, lazy_tensors(tensors, dir), options);
}

void save_checkpoint_files(const std::string& dir, const std::vector<LazyTensor>& tensors,
                           const SaveCheckpointOptions& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  QTUNE_CHECK(!ec, dir, ": cannot create directory (", ec.message(), ")");

  // Greedy packing in the given order: a shard closes when the next tensor would push it past the limit.
  std::vector<std::vector<LazyTensor>> shards(1);
  uint64_t shard_bytes = 0;
  const auto nbytes_of = [](const TensorSpec& spec) {
    return static_cast<uint64_t>(numel_of(spec.shape)) * dtype_size(spec.dtype);
  };
  for (const LazyTensor& item : tensors) {
    const uint64_t nbytes = nbytes_of(item.spec);
    if (options.max_shard_bytes > 0 && !shards.back().empty() && shard_bytes + nbytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(item);
    shard_bytes += nbytes;
  }

  // transformers refuses safetensors files whose metadata lacks a known "format".
  std::map<std::string, std::string> metadata = options.metadata;
  metadata.emplace("format", "pt");

  std::set<std::string> written;
  if (shards.size() == 1) {
    save_safetensors((fs::path(dir) / kSingleFile).string(), shards[0], metadata);
    written.insert(kSingleFile);
  } else {
    Json weight_map = Json::object();
    uint64_t total = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = shard_name(i, shards.size());
      save_safetensors((fs::path(dir) / name).string(), shards[i], metadata);
      written.insert(name);
      for (const LazyTensor& t : shards[i]) {
        weight_map[t.spec.name] = name;
        total += nbytes_of(t.spec);
      }
    }
    const Json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic((fs::path(dir) / kIndexFile).string(), index.dump(2) + "\n");
    written.insert(kIndexFile);
  }

  // Files of an earlier layout go last, so a crash before this point leaves a readable checkpoint.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == kSingleFile || name == kIndexFile || is_shard_name(name);
    if (ours && !written.count(name)) fs::remove(entry.path(), ec);
  }
}

}  // namespace qtune::io
