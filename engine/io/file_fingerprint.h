#pragma once
// What a resumed run compares to notice that its data changed under the same path: the size in bytes and a
// hash of the first MiB (of each regular, non-hidden file of a directory, in name order). Cheap on files of
// any size; a change past the first MiB that keeps the size is not noticed.
#include <string>

namespace qtune::io {

// "<bytes> bytes, <16 hex digits>"; throws naming `path` when it cannot be read.
std::string file_fingerprint(const std::string& path);

}  // namespace qtune::io
