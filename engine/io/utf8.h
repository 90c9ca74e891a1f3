#pragma once
// Strict UTF-8 (RFC 3629) for the file readers: no overlong forms, no surrogates, nothing above U+10FFFF.
#include <cstddef>
#include <string_view>

namespace qtune::io {

// The offset of the first byte that does not start a valid character, or npos.
size_t first_invalid_utf8(std::string_view s);

}  // namespace qtune::io
