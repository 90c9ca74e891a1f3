#include "engine/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/check.h"

namespace qtune::io {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // pid and a counter: concurrent writers of one target, in or across processes, never share a temporary.
  static std::atomic<uint64_t> counter{0};
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  QTUNE_CHECK(fd_ >= 0, path_, ": cannot create ", tmp_path_, " (", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  QTUNE_CHECK(fd_ >= 0 && !committed_, path_, ": write after commit");
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    QTUNE_CHECK(n > 0, path_, ": write failed (", std::strerror(errno), ")");
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }

void AtomicFile::commit() {
  QTUNE_CHECK(fd_ >= 0 && !committed_, path_, ": commit twice");
  QTUNE_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", std::strerror(errno), ")");
  const int closed = ::close(fd_);
  fd_ = -1;
  QTUNE_CHECK(closed == 0, path_, ": close failed (", std::strerror(errno), ")");
  QTUNE_CHECK(std::rename(tmp_path_.c_str(), path_.c_str()) == 0, path_, ": rename from ", tmp_path_, " failed (",
              std::strerror(errno), ")");
  committed_ = true;
  // The rename is durable only once the directory entry is on disk.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFile out(path);
  out.write(contents);
  out.commit();
}

}  // namespace qtune::io
