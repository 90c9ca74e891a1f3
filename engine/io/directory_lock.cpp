#include "engine/io/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "engine/check.h"

namespace qtune::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLockFile = ".qtune.lock";

// True when `fd` is still the file at `path`: a holder unlinks the file before releasing it, so a lock taken on an
// unlinked inode protects nothing and must be taken again on the new file.
bool still_linked(int fd, const std::string& path) {
  struct stat by_fd {
  }, by_path{};
  if (::fstat(fd, &by_fd) != 0 || ::stat(path.c_str(), &by_path) != 0) return false;
  return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

}  // namespace

int lock_owner_pid(const std::string& dir) {
  std::ifstream in(fs::path(dir) / kLockFile);
  long pid = 0;
  if (!(in >> pid) || pid <= 0 || pid > 1 << 30) return 0;
  return static_cast<int>(pid);
}

DirectoryLock DirectoryLock::acquire(const std::string& dir, const std::string& purpose) {
  std::error_code ec;
  const bool created = fs::create_directories(dir, ec);
  QTUNE_CHECK(!ec, purpose, " ", dir, ": cannot create the directory (", ec.message(), ")");
  const std::string file = (fs::path(dir) / kLockFile).string();
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    QTUNE_CHECK(fd >= 0, purpose, " ", dir, ": cannot open its lock file ", file, " (", std::strerror(errno), ")");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      ::close(fd);
      QTUNE_CHECK(error == EWOULDBLOCK, purpose, " ", dir, ": cannot lock ", file, " (", std::strerror(error), ")");
      // The owner writes its pid right after locking: give it a moment before saying the pid is unknown.
      int owner = lock_owner_pid(dir);
      for (int i = 0; i < 20 && owner == 0; ++i) {
        ::usleep(5000);
        owner = lock_owner_pid(dir);
      }
      QTUNE_FAIL(purpose, " ", dir, " is in use by another qtune process",
                 owner > 0 ? " (pid " + std::to_string(owner) + ")" : std::string(),
                 ": wait for it to finish, stop it, or choose another directory");
    }
    if (!still_linked(fd, file)) {  // the previous holder removed it between our open and flock
      ::close(fd);
      QTUNE_CHECK(attempt < 100, purpose, " ", dir, ": its lock file ", file, " keeps being replaced");
      continue;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    const bool written = ::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) == ssize_t(pid.size());
    if (!written) {
      const int error = errno;
      ::close(fd);
      QTUNE_FAIL(purpose, " ", dir, ": cannot write its lock file ", file, " (", std::strerror(error), ")");
    }
    return DirectoryLock(dir, file, fd, created);
  }
}

DirectoryLock::DirectoryLock(std::string dir, std::string file, int fd, bool created_dir)
    : dir_(std::move(dir)), file_(std::move(file)), fd_(fd), created_dir_(created_dir) {}

DirectoryLock::DirectoryLock(DirectoryLock&& other) noexcept
    : dir_(std::move(other.dir_)), file_(std::move(other.file_)), fd_(other.fd_), created_dir_(other.created_dir_) {
  other.fd_ = -1;
}

DirectoryLock& DirectoryLock::operator=(DirectoryLock&& other) noexcept {
  if (this != &other) {
    release();
    dir_ = std::move(other.dir_);
    file_ = std::move(other.file_);
    fd_ = other.fd_;
    created_dir_ = other.created_dir_;
    other.fd_ = -1;
  }
  return *this;
}

DirectoryLock::~DirectoryLock() { release(); }

void DirectoryLock::release() {
  if (fd_ < 0) return;
  ::unlink(file_.c_str());  // still held: a process waiting on this inode sees it unlinked and retries
  ::close(fd_);
  fd_ = -1;
  std::error_code ignored;
  if (created_dir_ && fs::is_empty(dir_, ignored)) fs::remove(dir_, ignored);
}

}  // namespace qtune::io
