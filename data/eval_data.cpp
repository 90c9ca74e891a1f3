#include "data/eval_data.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"

namespace qtune::data {
namespace {

using nlohmann::json;

std::string read_file(const std::string& path) {
  QTUNE_CHECK(std::filesystem::is_regular_file(path), "eval data ", path, " not found");
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in.good(), "eval data ", path, " is not readable");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Calls `visit(object, line)` for every non-blank line of a JSONL file, which must be a JSON object,
// until it returns false.
void for_each_jsonl_object(const std::string& path, const std::function<bool(const json&, int64_t)>& visit) {
  std::istringstream in(read_file(path));
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    json object;
    try {
      object = json::parse(text);
    } catch (const json::exception& e) {
      QTUNE_FAIL(path, ":", line, ": not valid JSON (", e.what(), ")");
    }
    QTUNE_CHECK(object.is_object(), path, ":", line, ": expected a JSON object, got ", object.type_name());
    if (!visit(object, line)) return;
  }
}

const json& member(const json& object, const char* key, const std::string& path, int64_t line) {
  const auto it = object.find(key);
  QTUNE_CHECK(it != object.end(), path, ":", line, ": no \"", key, "\" key");
  return *it;
}

int64_t parse_label(const json& label, size_t endings, const std::string& path, int64_t line) {
  int64_t value = -1;
  if (label.is_number_integer()) {
    value = label.get<int64_t>();
  } else if (label.is_string()) {
    const auto& s = label.get_ref<const std::string&>();
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    QTUNE_CHECK(ec == std::errc() && end == s.data() + s.size(), path, ":", line,
                ": \"label\" must be an index, got \"", s, "\"");
  } else {
    QTUNE_FAIL(path, ":", line, ": \"label\" must be an integer or a string of digits, got ", label.type_name());
  }
  QTUNE_CHECK(value >= 0 && value < static_cast<int64_t>(endings), path, ":", line, ": \"label\" ", value,
              " is not an index of the ", endings, " endings");
  return value;
}

// Walks `text` one character at a time, telling `visit` whether each is whitespace; ill-formed bytes
// are not.
template <class Visit>
void for_each_char(std::string_view text, Visit visit) {
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Step step = utf8::scan(text, pos);
    bool space = false;
    if (step.valid) {
      size_t p = pos;
      space = is_unicode_space(utf8::next(text, p));
    }
    visit(pos, step.length, space);
    pos += step.length;
  }
}

}  // namespace

std::vector<std::string> load_eval_documents(const std::string& path) {
  std::vector<std::string> documents;
  if (std::filesystem::path(path).extension() == ".jsonl") {
    for_each_jsonl_object(path, [&](const json& object, int64_t line) {
      const json& text = member(object, "text", path, line);
      QTUNE_CHECK(text.is_string(), path, ":", line, ": \"text\" must be a string, got ", text.type_name());
      documents.push_back(text.get<std::string>());
      return true;
    });
  } else {
    std::string text = read_file(path);
    const size_t bad = utf8::first_invalid(text);
    QTUNE_CHECK(bad == std::string::npos, path, ":", 1 + std::count(text.begin(), text.begin() + bad, '\n'),
                ": not UTF-8 (byte ", bad, " of the file)");
    if (!text.empty()) documents.push_back(std::move(text));
  }
  QTUNE_CHECK(!documents.empty(), "eval data ", path, " holds no document",
              " (a .jsonl file holds one {\"text\": ...} object per line; any other file is one document)");
  return documents;
}

std::vector<ChoiceExample> load_choice_examples(const std::string& path, int64_t limit) {
  std::vector<ChoiceExample> examples;
  for_each_jsonl_object(path, [&](const json& object, int64_t line) {
    ChoiceExample ex;
    ex.line = line;
    const json& ctx = member(object, "ctx", path, line);
    QTUNE_CHECK(ctx.is_string(), path, ":", line, ": \"ctx\" must be a string, got ", ctx.type_name());
    ex.ctx = ctx.get<std::string>();
    const json& endings = member(object, "endings", path, line);
    QTUNE_CHECK(endings.is_array() && !endings.empty(), path, ":", line,
                ": \"endings\" must be a non-empty list of strings");
    for (const json& e : endings) {
      QTUNE_CHECK(e.is_string() && !e.get_ref<const std::string&>().empty(), path, ":", line, ": ending ",
                  ex.endings.size(), " must be a non-empty string");
      ex.endings.push_back(e.get<std::string>());
    }
    ex.label = parse_label(member(object, "label", path, line), ex.endings.size(), path, line);
    examples.push_back(std::move(ex));
    return limit <= 0 || static_cast<int64_t>(examples.size()) < limit;
  });
  QTUNE_CHECK(!examples.empty(), "eval data ", path,
              " holds no example (one {\"ctx\", \"endings\", \"label\"} object per line)");
  return examples;
}

bool is_unicode_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string_view strip_trailing_space(std::string_view text) {
  size_t end = 0;  // just past the last non-space character
  for_each_char(text, [&](size_t pos, size_t length, bool space) {
    if (!space) end = pos + length;
  });
  return text.substr(0, end);
}

int64_t count_words(std::string_view text) {
  int64_t runs = 0;
  bool in_space = false;
  for_each_char(text, [&](size_t, size_t, bool space) {
    runs += space && !in_space;
    in_space = space;
  });
  return runs + 1;
}

int32_t prefix_token_id(const Tokenizer& tokenizer) {
  if (auto bos = tokenizer.bos_id()) return *bos;
  if (auto eos = tokenizer.eos_id()) return *eos;
  QTUNE_FAIL("the tokenizer has neither a bos nor an eos token to start scored text with");
}

}  // namespace qtune::data
