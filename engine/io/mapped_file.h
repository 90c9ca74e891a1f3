#pragma once
// A whole file memory-mapped for a reader (safetensors, GGUF): private and writable, so a tensor viewing the
// mapping can be written to without touching the file (copy-on-write pages) and without faulting on read-only
// memory.
#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace qtune::io {

struct MappedFile {
  std::shared_ptr<const void> mapping;  // unmaps when the last holder lets go; null for an empty file
  std::span<const std::byte> bytes;
};

// Throws naming `path` when it is missing, not a regular file, or cannot be mapped. An empty file gives an
// empty span (an mmap of 0 bytes is an error): the format's parser rejects it for what it is.
MappedFile map_file(const std::string& path);

// Drops the whole pages inside `bytes` (a range of a mapping) from this process's memory (MADV_DONTNEED), for a
// loader that has consumed them: reading them again reads the file. Pages shared with bytes outside the range
// are kept, since a neighbour may still be in use.
void release_pages(std::span<const std::byte> bytes);

}  // namespace qtune::io
