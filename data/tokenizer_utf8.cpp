#include "data/tokenizer_utf8.h"

namespace qtune::data::utf8 {

namespace {

// Number of bytes of a character led by `lead` and the allowed range of its second byte; the
// narrowed ranges exclude overlong forms, surrogates and code points above U+10FFFF (Table 3-7).
struct Lead {
  size_t length;
  unsigned char lo, hi;
};

Lead classify(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};  // continuation byte, C0/C1 or F5..FF: never starts a character
}

}  // namespace

Step scan(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const Lead lead = classify(byte(pos));
  if (lead.length == 0) return {1, false, false};
  if (lead.length == 1) return {1, true, false};
  size_t n = 1;
  for (; n < lead.length; ++n) {
    if (pos + n >= text.size()) return {n, false, true};
    const unsigned char lo = n == 1 ? lead.lo : 0x80, hi = n == 1 ? lead.hi : 0xBF;
    if (byte(pos + n) < lo || byte(pos + n) > hi) return {n, false, false};
  }
  return {n, true, false};
}

size_t first_invalid(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const Step s = scan(text, pos);
    if (!s.valid) return pos;
    pos += s.length;
  }
  return std::string_view::npos;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const Step s = scan(bytes, pos);
    if (s.valid) {
      out.append(bytes.substr(pos, s.length));
    } else {
      out.append(kReplacement);
    }
    pos += s.length;
  }
  return out;
}

size_t char_length(std::string_view text, size_t pos) {
  const size_t n = classify(static_cast<unsigned char>(text[pos])).length;
  return n == 0 ? 1 : n;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t next(std::string_view text, size_t& pos) {
  const size_t n = char_length(text, pos);
  char32_t cp = static_cast<unsigned char>(text[pos]);
  if (n > 1) {
    cp &= 0x7F >> n;
    for (size_t i = 1; i < n && pos + i < text.size(); ++i) cp = (cp << 6) | (text[pos + i] & 0x3F);
  }
  pos += n;
  return cp;
}

}  // namespace qtune::data::utf8
