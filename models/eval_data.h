#pragma once
// Evaluation data files and the text conventions of lm-evaluation-harness that scoring relies on.
// (load_eval_documents and count_words, declared in models/evaluate.h, live here too.)
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer.h"

namespace qtune::models {

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

}  // namespace qtune::models
