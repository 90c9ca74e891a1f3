#pragma once
// UTF-8 scanning shared by the tokenizers: validation of input text, the lossy byte -> text conversion
// that byte-level decoders need, and the "unfinished character at the end" test of StreamDecoder.
#include <cstddef>
#include <string>
#include <string_view>

namespace qtune::data::utf8 {

// The replacement character U+FFFD, as UTF-8.
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// One step of a left-to-right scan: at byte `pos`, either a well-formed character of `length` bytes, or
// an ill-formed "maximal subpart" (Unicode 15, section 3.9) of `length` >= 1 bytes. `truncated` marks an
// ill-formed subpart that is only ill-formed because the input ends: more bytes could still complete it.
struct Step {
  size_t length = 0;
  bool valid = false;
  bool truncated = false;
};
Step scan(std::string_view text, size_t pos);

// Offset of the first ill-formed byte, or npos when `text` is valid UTF-8.
size_t first_invalid(std::string_view text);

// `bytes` made valid: every maximal ill-formed subpart becomes one U+FFFD. This is what Rust's
// String::from_utf8_lossy (the `tokenizers` library's ByteLevel decoder) does.
std::string lossy(std::string_view bytes);

// Length of the character starting at `pos` of valid UTF-8 (1 for a stray continuation byte).
size_t char_length(std::string_view text, size_t pos);

// Appends code point `cp` (< 0x110000) encoded as UTF-8.
void append(std::string& out, char32_t cp);

// The code point at `pos` of valid UTF-8; advances `pos` past it.
char32_t next(std::string_view text, size_t& pos);

}  // namespace qtune::data::utf8
