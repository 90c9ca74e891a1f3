#pragma once
// safetensors files (docs/numerics.md §8): a u64 little-endian header length N, N bytes of UTF-8 JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data.
// Reading memory-maps the file and validates it whole (safetensors_header.h) before any tensor is touched.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "engine/io/safetensors_header.h"
#include "engine/io/safetensors_writer.h"
#include "engine/shape.h"
#include "engine/tensor.h"

namespace qtune::io {

std::optional<DType> to_dtype(StDType t);  // nullopt for I16
StDType to_st_dtype(DType t);              // every qtune DType has one

// A validated safetensors file. open() memory-maps it; tensors are zero-copy views that keep the
// mapping alive, so the file object may be destroyed while its tensors live on.
class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws qtune::Error "<path>: <rule broken>" on any violation.
  static SafetensorsFile open(const std::string& path);
  // Validates an in-memory image (tests, the fuzz target). `bytes` must outlive the object;
  // `label` names it in errors.
  static SafetensorsFile parse(std::span<const std::byte> bytes, std::string label);

  const std::string& path() const { return label_; }
  // Entries in the order of their data offsets.
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const TensorEntry* find(std::string_view name) const;  // nullptr when absent
  const TensorEntry& at(std::string_view name) const;    // throws naming the file and tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor's bytes inside the mapping.
  std::span<const std::byte> bytes(const TensorEntry& e) const;
  // A CPU tensor viewing the mapped bytes (read-only data: copy before writing into it).
  // Throws for I16. Alignment: the view is used in place when its offset suits the dtype, else copied.
  Tensor tensor(std::string_view name) const;
  // Drops the tensor's mapped pages from this process's memory (madvise MADV_DONTNEED), for a loader that
  // has consumed it: the file is not read whole into resident memory. Only when no view of the tensor is
  // alive -- a view would read the file again, and writes made through it would be lost.
  void release(const TensorEntry& e) const { release(e, 0, e.nbytes()); }
  // The same for bytes [begin, end) of the tensor (the whole pages inside them), for a loader that consumes
  // it in chunks.
  void release(const TensorEntry& e, uint64_t begin, uint64_t end) const;

 private:
  SafetensorsFile() = default;
  std::string label_;
  std::shared_ptr<const void> mapping_;  // keeps an mmap (or nothing, for parse()) alive
  const std::byte* data_ = nullptr;      // start of the data section
  uint64_t data_size_ = 0;
  std::vector<TensorEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device, any layout; written in the order given) and string metadata to `path`
// atomically: a temporary file beside it, fsync, rename, fsync of the directory.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The same from tensors produced one at a time as the writer reaches them.
void save_safetensors(const std::string& path, const std::vector<LazyTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace qtune::io
