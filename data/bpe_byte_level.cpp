#include "data/bpe_byte_level.h"

#include <array>
#include <cstdint>

#include "data/tokenizer_utf8.h"

namespace qtune::data::byte_level {

namespace {

// Bytes that are visible Latin-1 characters: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. The rest (controls,
// space, DEL, NBSP, soft hyphen) would be invisible or ambiguous in a vocabulary file.
bool printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Table {
  std::array<std::string, 256> utf8;  // byte -> its stand-in character as UTF-8
  std::array<int16_t, 512> byte_of;   // stand-in code point (all < 512) -> byte, or -1

  Table() {
    byte_of.fill(-1);
    int next_extra = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next_extra++);
      utf8[b].clear();
      utf8::append(utf8[b], cp);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

std::string encode(std::string_view bytes) {
  const Table& t = table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += t.utf8[static_cast<unsigned char>(c)];
  return out;
}

bool decode(std::string_view token, std::string& out) {
  const Table& t = table();
  const size_t start = out.size();
  for (size_t pos = 0; pos < token.size();) {
    const utf8::Step step = utf8::scan(token, pos);
    const char32_t cp = step.valid ? utf8::next(token, pos) : 0x110000;
    if (!step.valid || cp >= t.byte_of.size() || t.byte_of[cp] < 0) {
      out.resize(start);
      return false;
    }
    out += static_cast<char>(t.byte_of[cp]);
  }
  return true;
}

}  // namespace qtune::data::byte_level
