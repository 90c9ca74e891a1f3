#include "data/bpe_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"

namespace qtune::data {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

// Matching state, one per thread and shared by every regex: match data for the whole match only, and a
// JIT stack larger than PCRE2's 32 KiB default so that long runs of one character class cannot
// exhaust it. pcre2_match returns 0 when a pattern's capture groups do not fit; the whole match is set.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  MatchState() {
    QTUNE_CHECK(data && context && stack, "out of memory for PCRE2 matching state");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

struct BpeRegex::Impl {
  pcre2_code* code = nullptr;
  std::string where;
  ~Impl() { pcre2_code_free(code); }
};

BpeRegex::BpeRegex(const std::string& pattern, bool literal, const std::string& where)
    : impl_(std::make_unique<Impl>()) {
  impl_->where = where;
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t flags = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  impl_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags, &error, &offset, nullptr);
  QTUNE_CHECK(impl_->code != nullptr, where, ": the regex does not compile (PCRE2: ", pcre2_message(error),
              " at offset ", offset, "): ", pattern);
  // JIT is much faster; where it fails (a platform PCRE2 has no JIT for), pcre2_match interprets instead,
  // with the same matches.
  (void)pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

BpeRegex::~BpeRegex() = default;

void BpeRegex::split(std::string_view text, std::vector<std::string_view>& out) const {
  MatchState& state = match_state();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t last = 0;  // end of the previous piece
  size_t pos = 0;   // where the next search starts
  while (pos < text.size()) {
    // The text was validated once by the caller; PCRE2 need not check it again at every offset.
    const int rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    QTUNE_CHECK(rc >= 0, impl_->where, ": regex matching failed (PCRE2: ", pcre2_message(rc), ")");
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // an empty match cuts nothing; look again one character further on
      if (begin >= text.size()) break;
      pos = begin + utf8::char_length(text, begin);
      continue;
    }
    if (begin > last) out.push_back(text.substr(last, begin - last));
    out.push_back(text.substr(begin, end - begin));
    last = pos = end;
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

}  // namespace qtune::data
