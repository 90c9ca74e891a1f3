#pragma once
// Instruction-tuning data in JSONL: one JSON object per line, either alpaca fields
// (`instruction`, `input` (optional), `output`) or chat `messages` (list of {`role`, `content`}, roles
// system / user / assistant). Each example becomes tokens plus labels with the prompt masked (-100), so
// the loss covers only the response (the assistant turns, for chat).
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace qtune::data {

inline constexpr int32_t kIgnoreIndex = -100;

// A training sequence: labels[i] is the target for tokens[i] (already shifted: the token that should
// follow tokens[i], or kIgnoreIndex). Same length.
struct Example {
  std::vector<int32_t> tokens;
  std::vector<int32_t> labels;
};

struct InstructionOptions {
  // "alpaca": the Stanford Alpaca prompt ("Below is an instruction that describes a task..."; with the
  // "### Input:" section only when `input` is non-empty); "chat": Llama-2 style [INST] ... [/INST] turns
  // with a <<SYS>> block for a system message. See docs/data.md for the exact text.
  std::string prompt_template = "alpaca";
  bool train_on_input = false;  // true: the prompt is not masked
  int64_t max_seq_len = 0;      // > 0: examples are truncated to their first max_seq_len tokens
  bool skip_bad_lines = false;  // false: a malformed line is an Error "<file>:<line>: <what>"
};

struct InstructionData {
  std::vector<Example> examples;
  int64_t skipped_lines = 0;     // malformed lines skipped (only with skip_bad_lines)
  int64_t dropped_examples = 0;  // examples left without any target by truncation (a prompt of max_seq_len)
};

// BOS before each prompt and EOS after each response when the tokenizer has them (for chat: per
// user / assistant turn pair, as Llama 2 does). Prompt and response segments are encoded separately and
// concatenated. Blank lines are ignored.
InstructionData load_instruction_jsonl(const std::string& path, const Tokenizer& tokenizer,
                                       const InstructionOptions& options = {});

}  // namespace qtune::data
