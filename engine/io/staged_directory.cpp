#include "engine/io/staged_directory.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "engine/check.h"
#include "engine/io/crash_point.h"

namespace qtune::io {
namespace {

namespace fs = std::filesystem;

enum class Kind { staging, aside, file_temp };

struct Leftover {
  fs::path path;
  std::string name;  // the destination's file name
  Kind kind;
  int pid;
};

std::optional<int> parse_pid(std::string_view digits) {
  int pid = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (error != std::errc() || end != digits.data() + digits.size() || pid <= 0) return std::nullopt;
  return pid;
}

// Recognizes ".NAME.tmp-PID" / ".NAME.old-PID" (StagedDirectory) and "NAME.tmp.PID.N" (an AtomicFile's
// temporary). Only these hidden or numbered names: a user's "model.old.2" backup is never taken for a leftover.
std::optional<Leftover> parse_leftover(const fs::path& path) {
  const std::string file = path.filename().string();
  for (const auto& [marker, kind] : {std::pair{".tmp-", Kind::staging}, std::pair{".old-", Kind::aside}}) {
    const size_t at = file.rfind(marker);
    if (file.size() < 2 || file[0] != '.' || at == std::string::npos || at < 2) continue;
    if (const auto pid = parse_pid(std::string_view(file).substr(at + 5)))
      return Leftover{path, file.substr(1, at - 1), kind, *pid};
  }
  const size_t at = file.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return std::nullopt;
  const std::string_view rest = std::string_view(file).substr(at + 5);
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || !parse_pid(rest.substr(dot + 1))) return std::nullopt;
  if (const auto pid = parse_pid(rest.substr(0, dot))) return Leftover{path, file.substr(0, at), Kind::file_temp, *pid};
  return std::nullopt;
}

std::vector<Leftover> leftovers_in(const fs::path& parent) {
  std::vector<Leftover> out;
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return out;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    // This process's own pid on a leftover means an earlier process that had the same pid (its writers clean up
    // after themselves, and recovery runs before they start).
    if (auto l = parse_leftover(entry.path()); l && (l->pid == ::getpid() || !process_alive(l->pid))) out.push_back(*l);
  }
  return out;
}

void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  QTUNE_CHECK(fd >= 0, "cannot open directory ", dir.string(), " to sync it (", std::strerror(errno), ")");
  const int rc = ::fsync(fd);
  ::close(fd);
  QTUNE_CHECK(rc == 0, "fsync of directory ", dir.string(), " failed");
}

// Recovers one destination from the leftovers that name it (all of dead processes).
void recover(const fs::path& dir, const std::vector<Leftover>& mine, std::vector<std::string>& notes) {
  std::map<int, std::pair<std::optional<fs::path>, std::optional<fs::path>>> by_pid;  // pid -> (staging, aside)
  for (const Leftover& l : mine) {
    if (l.kind == Kind::file_temp) {
      fs::remove(l.path);
      notes.push_back("removed " + l.path.string() + " (a temporary file of process " + std::to_string(l.pid) +
                      ", which is gone)");
    } else {
      (l.kind == Kind::staging ? by_pid[l.pid].first : by_pid[l.pid].second) = l.path;
    }
  }
  for (const auto& [pid, found] : by_pid) {
    const auto& [staging, aside] = found;
    const std::string who = " (process " + std::to_string(pid) + " was killed ";
    if (aside && !fs::exists(dir)) {
      if (staging) {
        fs::rename(*staging, dir);
        fs::remove_all(*aside);
        notes.push_back("completed the replacement of " + dir.string() + " with " + staging->filename().string() + who +
                        "between its two renames)");
      } else {
        fs::rename(*aside, dir);
        notes.push_back("restored " + dir.string() + " from " + aside->filename().string() + who +
                        "while replacing it)");
      }
      fsync_directory(dir.parent_path());
      continue;
    }
    if (aside) {
      fs::remove_all(*aside);
      notes.push_back("removed " + aside->string() + who + "after replacing " + dir.filename().string() + ")");
    }
    if (staging) {
      fs::remove_all(*staging);
      notes.push_back("removed " + staging->string() + who + "while writing it; " + dir.filename().string() +
                      " was left as it was)");
    }
  }
}

// ".NAME<marker>PID" beside `dir`, for this process. (Appended piece by piece: GCC 12 warns, wrongly, of an
// overlapping copy in "." + name.)
fs::path sibling(const fs::path& dir, const char* marker) {
  std::string name(".");
  name += dir.filename().string();
  name += marker;
  name += std::to_string(::getpid());
  return dir.parent_path() / name;
}

fs::path normalized(const fs::path& dir) {
  fs::path out = dir.lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/"
  if (!out.has_parent_path()) out = fs::path(".") / out;
  return out;
}

}  // namespace

bool process_alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

std::vector<std::string> recover_staged_directory(const fs::path& dir) {
  const fs::path d = normalized(dir);
  std::vector<Leftover> mine;
  for (Leftover& l : leftovers_in(d.parent_path())) {
    if (l.name == d.filename().string() && l.kind != Kind::file_temp) mine.push_back(std::move(l));
  }
  std::vector<std::string> notes;
  recover(d, mine, notes);
  return notes;
}

std::vector<std::string> recover_staged_directories_in(const fs::path& parent) {
  std::map<std::string, std::vector<Leftover>> by_name;
  for (Leftover& l : leftovers_in(parent)) by_name[l.name].push_back(std::move(l));
  std::vector<std::string> notes;
  for (const auto& [name, mine] : by_name) recover(parent / name, mine, notes);
  return notes;
}

StagedDirectory::StagedDirectory(fs::path dir) : dir_(normalized(dir)) {
  const std::string name = dir_.filename().string();
  QTUNE_CHECK(name != "." && name != "..", dir.string(),
              ": name the directory to write (a staged directory cannot replace . or ..)");
  const fs::path parent = dir_.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  QTUNE_CHECK(!ec && fs::is_directory(parent), dir_.string(), ": cannot create its parent directory ", parent.string(),
              ec ? " (" + ec.message() + ")" : std::string());
  notes_ = recover_staged_directory(dir_);
  staging_ = sibling(dir_, ".tmp-");
  fs::remove_all(staging_);
  fs::create_directory(staging_);
}

StagedDirectory::~StagedDirectory() {
  std::error_code ignored;
  if (!committed_) fs::remove_all(staging_, ignored);
}

void StagedDirectory::commit() {
  QTUNE_CHECK(!committed_, dir_.string(), ": committed twice");
  fsync_directory(staging_);
  crash_point("staged:filled:" + dir_.filename().string());
  const fs::path parent = dir_.parent_path();
  const fs::path aside = sibling(dir_, ".old-");
  const bool replace = fs::exists(dir_);
  if (replace) {
    fs::remove_all(aside);
    fs::rename(dir_, aside);
    crash_point("staged:moved_aside:" + dir_.filename().string());
  }
  fs::rename(staging_, dir_);
  committed_ = true;
  fsync_directory(parent);
  if (replace) {
    crash_point("staged:swapped:" + dir_.filename().string());
    fs::remove_all(aside);
  }
}

std::vector<std::string> write_directory_atomic(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
  StagedDirectory staged(dir);
  fill(staged.path());
  staged.commit();
  return staged.notes();
}

}  // namespace qtune::io
