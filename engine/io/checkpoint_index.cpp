#include "engine/io/checkpoint_index.h"

#include "engine/check.h"
#include "engine/io/json_reader.h"

namespace qtune::io {

std::map<std::string, std::string> read_checkpoint_index(const std::string& index_path) {
  const Json index = read_json_file(index_path);
  const JsonFields weight_map = JsonFields(index, index_path).object("weight_map");
  std::map<std::string, std::string> listed;
  for (const auto& [tensor, file] : weight_map.json().items()) {
    const std::string name = json_string(file, "weight_map[\"" + tensor + "\"]", index_path);
    QTUNE_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..", index_path,
                ": weight_map[\"", tensor, "\"] names \"", name, "\", not a file beside the index");
    listed[tensor] = name;
  }
  return listed;
}

}  // namespace qtune::io
