#pragma once
// One live process per directory. A lock file (.qtune.lock) inside the directory is held with flock(2), so
// the kernel releases it when the owner exits or is killed: there is no stale lock to clear by hand. The
// owner writes its pid into the file so that the next comer can say who holds it.
#include <string>

namespace qtune::io {

class DirectoryLock {
 public:
  // Creates `dir` when absent and takes its lock; throws naming `dir` and the owner's pid when another
  // process holds it. `purpose` completes the message ("output_dir runs/x is in use by ...").
  static DirectoryLock acquire(const std::string& dir, const std::string& purpose);

  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  // Removes the lock file (while still holding it) and releases the lock; removes `dir` too when acquire
  // created it and nothing else was written there, so a command that failed early leaves no trace.
  ~DirectoryLock();

 private:
  DirectoryLock(std::string dir, std::string file, int fd, bool created_dir);
  void release();

  std::string dir_, file_;
  int fd_ = -1;
  bool created_dir_ = false;
};

// The pid written in a directory's lock file, 0 when there is none (absent, or written by nothing yet).
int lock_owner_pid(const std::string& dir);

}  // namespace qtune::io
