#include "data/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/check.h"
#include "engine/io/json_reader.h"

namespace qtune::data {

std::optional<std::string> read_chat_template(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path jinja = fs::path(model_dir) / "chat_template.jinja";
  if (fs::is_regular_file(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    QTUNE_CHECK(in.good() || in.eof(), jinja.string(), ": cannot be read");
    return text.str();
  }
  const fs::path config = fs::path(model_dir) / "tokenizer_config.json";
  if (!fs::is_regular_file(config)) return std::nullopt;
  const io::Json json = io::read_json_file(config.string());
  const io::JsonFields root(json, config.string());
  if (!root.has("chat_template")) return std::nullopt;
  if (root.at("chat_template").is_string()) return root.string("chat_template");
  const io::Json& list = root.array("chat_template");
  for (size_t i = 0; i < list.size(); ++i) {
    const io::JsonFields entry(list[i], config.string(), root.item_name("chat_template", i) + ".");
    if (entry.string("name") == "default") return entry.string("template");
  }
  root.fail("chat_template", "is a list of templates without one named \"default\"");
}

}  // namespace qtune::data
