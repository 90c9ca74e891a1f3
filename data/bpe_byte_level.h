#pragma once
// The byte <-> character table of byte-level BPE (GPT-2, Llama 3). Every byte gets a printable
// stand-in character so that vocabularies and merges are plain text: bytes that are printable Latin-1
// characters stand for themselves, the other 68 map in byte order to U+0100, U+0101, ...
#include <string>
#include <string_view>

namespace qtune::data::byte_level {

// Each byte of `bytes` replaced by the UTF-8 of its stand-in character.
std::string encode(std::string_view bytes);

// The inverse for one token's text: appends the bytes its characters stand for to `out` and returns
// true, or returns false (leaving `out` as it was) when some character is not a stand-in.
bool decode(std::string_view token, std::string& out);

}  // namespace qtune::data::byte_level
