#pragma once
// A directory written beside its destination and swapped into place, so that the destination is at every
// moment absent, the old directory, or the complete new one -- and whatever a killed writer leaves behind is
// found and finished or undone by the next process that touches the destination.
//
// Names, beside DIR (in its parent):
//   .DIR.tmp-PID   the new directory being filled by process PID
//   .DIR.old-PID   the old DIR, moved aside by PID during its swap
// A swap is: fill and fsync .tmp; rename DIR -> .old; rename .tmp -> DIR; fsync the parent; remove .old.
// Recovery of a dead PID's leftovers (recover_staged_directory) therefore knows the state from what exists:
//   .old and .tmp, no DIR  -> killed between the renames: the .tmp is complete, finish the swap
//   .old, no .tmp, no DIR  -> (DIR was removed by hand) restore the old directory
//   .old and DIR           -> killed before the cleanup: remove .old
//   .tmp only              -> killed while filling: remove it
// Leftovers of a live process are never touched (liveness is by pid: a writer in another pid namespace sharing
// the directory is not seen; run directories are also locked, io::DirectoryLock). Crash points (io::crash_point)
// "staged:filled:NAME", "staged:moved_aside:NAME" and "staged:swapped:NAME" let tests kill a writer between these
// steps.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace qtune::io {

// Finishes or undoes what dead processes left beside `dir`; returns one line per action, for the caller to
// show ("restored runs/x/final from .final.old-123 (an interrupted replacement)").
std::vector<std::string> recover_staged_directory(const std::filesystem::path& dir);

// Recovers every staged directory whose leftovers lie in `parent` (its .NAME.tmp-PID / .NAME.old-PID entries).
std::vector<std::string> recover_staged_directories_in(const std::filesystem::path& parent);

class StagedDirectory {
 public:
  // Recovers `dir` first (the notes are kept: notes()), then creates the empty staging directory. The parent
  // directory must exist or be creatable.
  explicit StagedDirectory(std::filesystem::path dir);
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  ~StagedDirectory();  // without commit(): removes the staging directory; `dir` is untouched

  const std::filesystem::path& path() const { return staging_; }  // where to write
  const std::vector<std::string>& notes() const { return notes_; }
  // fsyncs the staging directory and swaps it in (replacing an existing `dir`).
  void commit();

 private:
  std::filesystem::path dir_, staging_;
  std::vector<std::string> notes_;
  bool committed_ = false;
};

// Builds `dir` through a StagedDirectory: fill(staging path), then commit. An exception from fill leaves
// `dir` as it was.
std::vector<std::string> write_directory_atomic(const std::filesystem::path& dir,
                                                const std::function<void(const std::filesystem::path&)>& fill);

// Whether a process with this pid exists (a pid reused by another program counts as alive: never wrong to wait).
bool process_alive(int pid);

}  // namespace qtune::io
