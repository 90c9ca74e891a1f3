#include "data/instruction_data.h"

#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/check.h"

namespace qtune::data {
namespace {

using nlohmann::json;

// A malformed line: what is wrong with it, without the "<file>:<line>: " prefix the caller adds.
struct BadLine {
  std::string what;
};

// A run of text encoded on its own; `trained`: its tokens are targets of the loss.
struct Segment {
  std::string text;
  bool bos = false, eos = false, trained = false;
};

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

// The string member `key` of `object`; `where` names the object in messages ("" for the line itself).
std::string string_member(const json& object, const std::string& key, const std::string& where, bool required,
                          const std::string& hint = "") {
  const auto it = object.find(key);
  if (it == object.end() || (!required && it->is_null())) {
    if (required) throw BadLine{"missing " + where + in_quotes(key) + hint};
    return {};
  }
  if (!it->is_string()) throw BadLine{where + in_quotes(key) + " must be a string, got " + it->type_name()};
  return it->get<std::string>();
}

// The Stanford Alpaca prompts (docs/data.md).
std::vector<Segment> alpaca_segments(const json& line) {
  const std::string hint = line.contains("messages") ? " (this line has \"messages\": use the chat template)" : "";
  const std::string instruction = string_member(line, "instruction", "", true, hint);
  const std::string input = string_member(line, "input", "", false);
  const std::string output = string_member(line, "output", "", true, hint);
  std::string prompt = input.empty() ? "Below is an instruction that describes a task. Write a response that "
                                       "appropriately completes the request.\n\n### Instruction:\n"
                                     : "Below is an instruction that describes a task, paired with an input that "
                                       "provides further context. Write a response that appropriately completes "
                                       "the request.\n\n### Instruction:\n";
  prompt += instruction;
  if (!input.empty()) prompt += "\n\n### Input:\n" + input;
  prompt += "\n\n### Response:\n";
  return {{prompt, true, false, false}, {output, false, true, true}};
}

std::string strip(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// Llama 2 chat: "[INST] {user} [/INST]" prompts (the first user turn carrying the <<SYS>> block) and
// assistant responses, each pair with its own BOS / EOS, as Meta's reference code builds them.
std::vector<Segment> chat_segments(const json& line) {
  const auto it = line.find("messages");
  if (it == line.end()) {
    throw BadLine{std::string("missing \"messages\"") +
                  (line.contains("instruction") ? " (this line has \"instruction\": use the alpaca template)" : "")};
  }
  if (!it->is_array() || it->empty()) throw BadLine{"\"messages\" must be a non-empty list"};
  std::vector<std::string> roles, contents;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "].";
    if (!m.is_object()) throw BadLine{"messages[" + std::to_string(i) + "] must be an object, got " + m.type_name()};
    roles.push_back(string_member(m, "role", where, true));
    contents.push_back(strip(string_member(m, "content", where, true)));
  }
  std::string system;
  size_t first = 0;
  if (roles[0] == "system") {
    system = "<<SYS>>\n" + contents[0] + "\n<</SYS>>\n\n";
    first = 1;
  }
  if (first == roles.size()) throw BadLine{"\"messages\" has no user / assistant turn"};
  std::vector<Segment> segments;
  for (size_t i = first; i < roles.size(); ++i) {
    const char* expected = (i - first) % 2 == 0 ? "user" : "assistant";
    if (roles[i] != expected) {
      throw BadLine{"messages[" + std::to_string(i) + "].role is " + in_quotes(roles[i]) + ", expected " +
                    in_quotes(expected) + " (after an optional system message, turns alternate user / assistant)"};
    }
    if ((i - first) % 2 == 0) {
      segments.push_back({"[INST] " + (i == first ? system : "") + contents[i] + " [/INST]", true, false, false});
    } else {
      segments.push_back({contents[i], false, true, true});
    }
  }
  if (!segments.back().trained) throw BadLine{"the last message must be the assistant's (nothing to train on)"};
  return segments;
}

// labels[i] is the target for tokens[i]: the next token when that token is trained.
Example encode_segments(const std::vector<Segment>& segments, const Tokenizer& tokenizer, bool train_on_input) {
  Example example;
  std::vector<bool> trained;
  for (const Segment& s : segments) {
    const std::vector<int32_t> ids = tokenizer.encode(s.text, s.bos, s.eos);
    example.tokens.insert(example.tokens.end(), ids.begin(), ids.end());
    trained.insert(trained.end(), ids.size(), s.trained || train_on_input);
  }
  const size_t n = example.tokens.size();
  example.labels.assign(n, kIgnoreIndex);
  for (size_t i = 0; i + 1 < n; ++i) {
    if (trained[i + 1]) example.labels[i] = example.tokens[i + 1];
  }
  return example;
}

}  // namespace

InstructionData load_instruction_jsonl(const std::string& path, const Tokenizer& tokenizer,
                                       const InstructionOptions& options) {
  const bool alpaca = options.prompt_template == "alpaca";
  QTUNE_CHECK(alpaca || options.prompt_template == "chat", "unknown prompt template \"", options.prompt_template,
              "\" (expected \"alpaca\" or \"chat\")");
  QTUNE_CHECK(options.max_seq_len >= 0, "max_seq_len must be >= 0, got ", options.max_seq_len);
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in.good(), path, ": cannot open instruction data (no such file or not readable)");

  InstructionData data;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      json parsed;
      try {
        parsed = json::parse(line);
      } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers past a double
        throw BadLine{std::string("not valid JSON (") + e.what() + ")"};
      }
      if (!parsed.is_object()) throw BadLine{std::string("expected a JSON object, got ") + parsed.type_name()};
      Example example =
          encode_segments(alpaca ? alpaca_segments(parsed) : chat_segments(parsed), tokenizer, options.train_on_input);
      if (options.max_seq_len > 0 && static_cast<int64_t>(example.tokens.size()) > options.max_seq_len) {
        example.tokens.resize(static_cast<size_t>(options.max_seq_len));
        example.labels.resize(static_cast<size_t>(options.max_seq_len));
      }
      bool any_target = false;
      for (const int32_t label : example.labels) any_target = any_target || label != kIgnoreIndex;
      if (any_target) {
        data.examples.push_back(std::move(example));
      } else {
        ++data.dropped_examples;
      }
    } catch (const BadLine& bad) {
      if (!options.skip_bad_lines) QTUNE_FAIL(path, ":", line_number, ": ", bad.what);
      ++data.skipped_lines;
    }
  }
  QTUNE_CHECK(!in.bad(), path, ": read error");
  return data;
}

}  // namespace qtune::data
