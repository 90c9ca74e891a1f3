#pragma once
// A pre-tokenizer regex (PCRE2, Unicode properties on) that cuts text into pieces the way the
// `tokenizers` library's Split with behavior "Isolated" does: every match is a piece and so is every
// stretch of text between matches. PCRE2 stays inside the .cpp.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qtune::data {

// The pre-tokenizer regexes of the two byte-level BPE families: GPT-2's (a ByteLevel pre-tokenizer with
// use_regex true) and Llama 3's (a Split step before a ByteLevel one).
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr const char* kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class BpeRegex {
 public:
  // `literal`: the pattern is a plain string to find, not a regex. Errors name `where` (file and key).
  BpeRegex(const std::string& pattern, bool literal, const std::string& where);
  ~BpeRegex();
  BpeRegex(const BpeRegex&) = delete;
  BpeRegex& operator=(const BpeRegex&) = delete;

  // Appends the pieces of `text` (valid UTF-8) to `out`; they are views into `text` and cover it exactly.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qtune::data
