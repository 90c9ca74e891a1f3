#pragma once
// `model.safetensors.index.json`, the shard list of a Hugging Face checkpoint:
// {"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}.
#include <map>
#include <string>

namespace qtune::io {

// Reads the index at `index_path`: tensor name -> shard file name. Every file must be a plain name beside the
// index (never a path that leaves the directory); anything else fails naming the file and the entry.
std::map<std::string, std::string> read_checkpoint_index(const std::string& index_path);

}  // namespace qtune::io
