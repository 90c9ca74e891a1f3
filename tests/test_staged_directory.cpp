// io::StagedDirectory (a directory swapped in complete, and what a killed writer left finished or undone),
// io::DirectoryLock (one live process per directory) and io::file_fingerprint.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "engine/io/directory_lock.h"
#include "engine/io/file_fingerprint.h"
#include "engine/io/staged_directory.h"
#include "scratch_files.h"

namespace fs = std::filesystem;
using qtune::testing::error_of;
using qtune::testing::read_bytes;
using qtune::testing::ScratchDir;
using qtune::testing::write_bytes;

namespace {

constexpr const char* kDeadPid = "4194999";  // above Linux's pid_max: no process has it

// A directory holding one file with `text`.
void make_dir(const fs::path& dir, const std::string& text) {
  fs::create_directories(dir);
  write_bytes((dir / "data.txt").string(), text);
}

std::string contents(const fs::path& dir) { return read_bytes((dir / "data.txt").string()); }

}  // namespace

TEST_CASE("a staged directory replaces its destination only when committed") {
  CHECK(error_of([] { qtune::io::StagedDirectory staged("."); }).find("cannot replace . or ..") != std::string::npos);
  ScratchDir scratch("staged");
  const fs::path out = scratch.path / "out";
  make_dir(out, "old");
  {
    qtune::io::StagedDirectory staged(out);
    CHECK(staged.path().filename().string() == ".out.tmp-" + std::to_string(::getpid()));
    write_bytes((staged.path() / "data.txt").string(), "new, abandoned");
  }  // no commit: the staging directory goes, out stays
  CHECK(contents(out) == "old");
  CHECK(std::distance(fs::directory_iterator(scratch.path), fs::directory_iterator()) == 1);

  CHECK_THROWS_AS(qtune::io::write_directory_atomic(out, [](const fs::path&) { throw std::runtime_error("disk"); }),
                  std::runtime_error);
  CHECK(contents(out) == "old");

  qtune::io::write_directory_atomic(out, [](const fs::path& dir) { write_bytes((dir / "data.txt").string(), "new"); });
  CHECK(contents(out) == "new");
  CHECK(std::distance(fs::directory_iterator(scratch.path), fs::directory_iterator()) == 1);
}

TEST_CASE("the leftovers of a dead writer are finished or undone, whatever step it died at") {
  ScratchDir scratch("recover");
  const fs::path out = scratch.path / "out";
  const fs::path tmp = scratch.path / (std::string(".out.tmp-") + kDeadPid);
  const fs::path old = scratch.path / (std::string(".out.old-") + kDeadPid);
  const auto only_out_left = [&] {
    CHECK(std::distance(fs::directory_iterator(scratch.path), fs::directory_iterator()) == 1);
  };

  SUBCASE("killed between the renames: the swap is completed") {
    make_dir(old, "old");
    make_dir(tmp, "new");
    const auto notes = qtune::io::recover_staged_directory(out);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].find("completed the replacement of " + out.string()) == 0);
    CHECK(contents(out) == "new");
    only_out_left();
  }
  SUBCASE("the old directory alone, and no destination: it is restored") {
    make_dir(old, "old");
    CHECK(qtune::io::recover_staged_directory(out).size() == 1);
    CHECK(contents(out) == "old");
    only_out_left();
  }
  SUBCASE("killed after the swap: the old copy goes") {
    make_dir(out, "new");
    make_dir(old, "old");
    CHECK(qtune::io::recover_staged_directory(out).size() == 1);
    CHECK(contents(out) == "new");
    only_out_left();
  }
  SUBCASE("killed while filling: the partial directory goes, the destination stays") {
    make_dir(out, "old");
    make_dir(tmp, "partial");
    CHECK(qtune::io::recover_staged_directory(out).size() == 1);
    CHECK(contents(out) == "old");
    only_out_left();
  }
  SUBCASE("names that only look like leftovers (a user's backups) are not touched") {
    make_dir(scratch.path / (std::string("out.old.") + kDeadPid), "a backup");
    make_dir(scratch.path / "out.tmp.7", "another");
    CHECK(qtune::io::recover_staged_directory(out).empty());
    CHECK(qtune::io::recover_staged_directories_in(scratch.path).empty());
    CHECK(std::distance(fs::directory_iterator(scratch.path), fs::directory_iterator()) == 2);
  }
  SUBCASE("this process's pid on a leftover is an earlier process's (pids are reused)") {
    make_dir(scratch.path / (".out.old-" + std::to_string(::getpid())), "old");
    CHECK(qtune::io::recover_staged_directory(out).size() == 1);
    CHECK(contents(out) == "old");
  }
  SUBCASE("a live writer's leftovers are not touched") {
    const fs::path live = scratch.path / (".out.tmp-" + std::to_string(::getppid()));
    make_dir(live, "being written");
    CHECK(qtune::io::recover_staged_directory(out).empty());
    CHECK(contents(live) == "being written");
  }
  SUBCASE("a whole directory: every destination's leftovers and dead temporary files") {
    make_dir(old, "old");
    make_dir(tmp, "new");
    make_dir(scratch.path / (std::string(".step_4.tmp-") + kDeadPid), "partial");
    write_bytes((scratch.path / (std::string("metrics.jsonl.tmp.") + kDeadPid + ".3")).string(), "x");
    write_bytes((scratch.path / "metrics.jsonl.tmp.notapid.3").string(), "a user's file");
    CHECK(qtune::io::recover_staged_directories_in(scratch.path).size() == 3);
    CHECK(contents(out) == "new");
    CHECK(fs::exists(scratch.path / "metrics.jsonl.tmp.notapid.3"));
    CHECK(std::distance(fs::directory_iterator(scratch.path), fs::directory_iterator()) == 2);
  }
}

TEST_CASE("a directory lock admits one holder and names it to the next") {
  ScratchDir scratch("lock");
  const std::string dir = scratch.str("run");
  {
    const auto lock = qtune::io::DirectoryLock::acquire(dir, "output_dir");
    CHECK(qtune::io::lock_owner_pid(dir) == ::getpid());
    // flock belongs to an open file description: a second acquire, even from this process, is refused.
    const std::string message = error_of([&] { qtune::io::DirectoryLock::acquire(dir, "output_dir"); });
    CHECK(message.find("output_dir " + dir + " is in use by another qtune process (pid " + std::to_string(::getpid()) +
                       ")") != std::string::npos);
  }
  CHECK(!fs::exists(dir));  // created by the lock, left empty: removed with it
  fs::create_directories(dir);
  write_bytes(dir + "/kept.txt", "x");
  { const auto lock = qtune::io::DirectoryLock::acquire(dir, "output_dir"); }
  CHECK(fs::exists(dir + "/kept.txt"));
  CHECK(!fs::exists(dir + "/.qtune.lock"));
  const auto again = qtune::io::DirectoryLock::acquire(dir, "output_dir");  // released: free again
}

TEST_CASE("a file fingerprint changes with the size or the first MiB") {
  ScratchDir scratch("fingerprint");
  const std::string file = scratch.file("data.txt");
  write_bytes(file, "hello world");
  const std::string first = qtune::io::file_fingerprint(file);
  CHECK(first.find("11 bytes, ") == 0);
  CHECK(qtune::io::file_fingerprint(file) == first);
  write_bytes(file, "hello World");
  CHECK(qtune::io::file_fingerprint(file) != first);
  write_bytes(file, "hello world!");
  CHECK(qtune::io::file_fingerprint(file).find("12 bytes, ") == 0);
  CHECK(error_of([&] { qtune::io::file_fingerprint(scratch.file("missing")); }).find("missing") != std::string::npos);
}
