#include "tools/recipes/sharded_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"

namespace qtune::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kShards = "shards";
constexpr const char* kIndex = "index.json";

std::string rank_file(int rank) { return "rank_" + std::to_string(rank) + ".safetensors"; }

size_t parameter_of(const std::string& key, size_t count) {
  return optim::Optimizer::parse_state_key(key, count).first;
}

// What every rank writes: its pieces of the parameters, then of the optimizer state, each with its whole shape.
struct Item {
  std::string name;
  Tensor piece;
  Shape whole;
};
std::vector<Item> items_of(models::ShardedLlama& model, const optim::OptimizerState& pieces) {
  const dist::Fsdp& fsdp = model.fsdp();
  std::vector<Item> out;
  for (size_t j = 0; j < fsdp.parameters().size(); ++j)
    out.push_back({fsdp.parameter_names()[j], fsdp.parameters()[j], fsdp.parameter_shape(j)});
  for (const auto& [key, t] : pieces.tensors)
    out.push_back({key, t, fsdp.parameter_shape(parameter_of(key, fsdp.parameters().size()))});
  return out;
}

struct IndexEntry {
  DType dtype;
  Shape shape;
  int64_t piece = 0;
};

}  // namespace

void write_rank_shard(const std::string& shards_dir, models::ShardedLlama& model, const optim::OptimizerState& pieces,
                      int rank) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Item& item : items_of(model, pieces)) tensors.emplace_back(item.name, item.piece.detach());
  io::save_safetensors((fs::path(shards_dir) / rank_file(rank)).string(), tensors, {{"format", "pt"}});
}

void write_shard_index(const std::string& shards_dir, models::ShardedLlama& model, const optim::OptimizerState& pieces,
                       int ranks) {
  json tensors = json::object();
  for (const Item& item : items_of(model, pieces))
    tensors[item.name] = {
        {"dtype", dtype_name(item.piece.dtype())}, {"shape", item.whole}, {"piece", item.piece.numel()}};
  const json index = {{"format", "qtune sharded state"}, {"ranks", ranks}, {"tensors", tensors}};
  io::write_file_atomic((fs::path(shards_dir) / kIndex).string(), index.dump(1) + "\n");
}

bool has_sharded_state(const std::string& checkpoint_dir) {
  return fs::is_regular_file(fs::path(checkpoint_dir) / kShards / kIndex);
}

optim::OptimizerState read_sharded_state(const std::string& checkpoint_dir, const std::vector<std::string>& names,
                                         const std::vector<Shape>& shapes, const std::vector<Tensor>& params, int rank,
                                         const std::map<std::string, double>& scalars) {
  QTUNE_CHECK(names.size() == shapes.size() && names.size() == params.size(), "read_sharded_state: ", names.size(),
              " names, ", shapes.size(), " shapes, ", params.size(), " tensors");
  const fs::path dir = fs::path(checkpoint_dir) / kShards;
  const std::string index_path = (dir / kIndex).string();
  std::map<std::string, IndexEntry> index;
  int ranks = 0;
  try {
    std::ifstream in(index_path);
    QTUNE_CHECK(in, "cannot read ", index_path);
    const json doc = json::parse(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
    ranks = doc.at("ranks").get<int>();
    QTUNE_CHECK(ranks >= 1, "\"ranks\" is ", ranks);
    for (const auto& [name, e] : doc.at("tensors").items()) {
      IndexEntry entry{dtype_from_name(e.at("dtype").get<std::string>()), e.at("shape").get<Shape>(),
                       e.at("piece").get<int64_t>()};
      QTUNE_CHECK(entry.piece >= 0 && entry.piece * ranks >= numel_of(entry.shape), "tensor ", name, ": ", ranks,
                  " pieces of ", entry.piece, " cannot hold ", shape_str(entry.shape));
      index.emplace(name, entry);
    }
  } catch (const json::exception& e) {
    QTUNE_FAIL(index_path, ": not a sharded-state index (", e.what(), ")");
  }
  std::vector<std::unique_ptr<io::SafetensorsFile>> files(static_cast<size_t>(ranks));
  // Elements [begin, end) of `name`, gathered from the rank files that hold them, into `out` (1-D, end - begin).
  const auto read = [&](const std::string& name, const Shape& shape, DType dtype, const Tensor& out, int64_t begin) {
    const auto it = index.find(name);
    QTUNE_CHECK(it != index.end(), index_path, ": no tensor ", name, " (is this checkpoint from another recipe?)");
    const IndexEntry& e = it->second;
    QTUNE_CHECK(e.shape == shape && e.dtype == dtype, index_path, ": ", name, " is ", dtype_name(e.dtype), " ",
                shape_str(e.shape), ", this run's is ", dtype_name(dtype), " ", shape_str(shape));
    const int64_t end = begin + out.numel();
    for (int64_t at = begin; at < end;) {
      const int64_t r = at / e.piece, offset = at - r * e.piece, count = std::min(end, (r + 1) * e.piece) - at;
      auto& file = files[static_cast<size_t>(r)];
      if (!file)
        file = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open((dir / rank_file(int(r))).string()));
      const Tensor piece = file->tensor(name);
      QTUNE_CHECK(piece.dtype() == e.dtype && piece.numel() == e.piece, (dir / rank_file(int(r))).string(), ": ", name,
                  " is ", dtype_name(piece.dtype()), " ", shape_str(piece.shape()), ", the index says ", e.piece,
                  " elements of ", dtype_name(e.dtype));
      out.narrow(0, at - begin, count).copy_(piece.narrow(0, offset, count));
      at += count;
    }
  };
  NoGradGuard no_grad;
  // This run's cut: elements [rank * n, ...) of each tensor, n = the size of what it holds.
  const auto fill = [&](const std::string& name, const Shape& shape, const Tensor& dst) {
    const int64_t n = dst.numel(), whole = numel_of(shape);
    const int64_t begin = std::min(whole, rank * n), count = std::min(whole, begin + n) - begin;
    const Tensor flat = dst.view({n});
    if (count > 0) read(name, shape, dst.dtype(), flat.narrow(0, 0, count), begin);
  };
  for (size_t j = 0; j < names.size(); ++j) fill(names[j], shapes[j], params[j]);
  optim::OptimizerState state;
  state.scalars = scalars;
  for (const auto& [name, e] : index) {
    if (name.rfind("state.", 0) != 0) continue;
    const size_t j = parameter_of(name, params.size());
    const Tensor t = Tensor::zeros(params[j].shape(), e.dtype);
    fill(name, shapes[j], t);
    state.tensors[name] = t;
  }
  return state;
}

}  // namespace qtune::recipes
