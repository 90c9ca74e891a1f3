#pragma once
// The chat template a Hugging Face model directory ships (a Jinja text the model's chat format is written in):
// qtune does not render it, it carries it into the files it writes (GGUF's tokenizer.chat_template).
#include <optional>
#include <string>

namespace qtune::data {

// `chat_template.jinja` in `model_dir` when present (transformers >= 4.43 saves it there), else
// tokenizer_config.json's "chat_template": a string, or a list of {"name", "template"} whose "default" entry is
// taken. nullopt when the directory has neither. A malformed tokenizer_config.json or entry is an Error naming
// the file and key.
std::optional<std::string> read_chat_template(const std::string& model_dir);

}  // namespace qtune::data
