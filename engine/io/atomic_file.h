#pragma once
// Crash-safe file writes: data goes to "<path>.tmp.<pid>.<n>" beside the target, is fsync'ed, then renamed
// over `path` and the directory is fsync'ed. A crash at any point leaves either the old file or the
// new one, never a half-written file under the final name.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace qtune::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // opens the temporary file; throws naming `path` on failure
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // without commit(): removes the temporary file, the target is untouched

  void write(std::span<const std::byte> bytes);
  void write(std::string_view text);
  void commit();  // fsync, rename, fsync directory

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Whole-file convenience wrapper.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace qtune::io
