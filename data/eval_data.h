#pragma once
// Evaluation data files and the text conventions of lm-evaluation-harness that scoring relies on.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace qtune::data {

// The harness's word count: len(re.split(r"\s+", text)) with Python's Unicode whitespace, i.e. one
// more than the number of whitespace runs (leading or trailing whitespace adds an empty word).
int64_t count_words(std::string_view text);

// Documents of an eval file: a `.jsonl` file holds one JSON object per line with a string `text`
// (blank lines are skipped); any other file is plain UTF-8 text, one document. Errors name the file
// (and line): missing or unreadable, malformed JSONL, invalid UTF-8, no document at all.
std::vector<std::string> load_eval_documents(const std::string& path);

// One line of a hellaswag-format JSONL file.
struct ChoiceExample {
  std::string ctx;
  std::vector<std::string> endings;  // at least one, none empty
  int64_t label = 0;                 // index into endings
  int64_t line = 0;                  // 1-based line of the file, for messages
};

// `ctx` (string), `endings` (non-empty list of non-empty strings), `label` (an int, or a string of
// digits as in the HF hellaswag dataset, within the endings). Blank lines are skipped; limit > 0 stops
// after that many examples. Errors name "<file>:<line>" and the key.
std::vector<ChoiceExample> load_choice_examples(const std::string& path, int64_t limit = 0);

// Python's str.isspace() for one code point (what `\s` matches in the harness's regexes).
bool is_unicode_space(char32_t c);

// `text` without its trailing whitespace (Python's str.rstrip()).
std::string_view strip_trailing_space(std::string_view text);

// The id every scored sequence starts with: BOS, or EOS for tokenizers without one (the harness's
// prefix token); an Error when the tokenizer has neither.
int32_t prefix_token_id(const Tokenizer& tokenizer);

}  // namespace qtune::data
