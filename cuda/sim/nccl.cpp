// NCCL in the sim flavor (include/nccl.h). Ranks are host threads of one process or separate processes
// (one per rank under mpirun, each simulating its own GPUs). A collective queued on a rank's stream runs
// when that stream runs: it waits there until every rank has reached the same collective (the same place
// in each rank's sequence of calls), checks that they agree on it, computes this rank's result from the
// other ranks' buffers into a temporary, and only then writes its output, so in-place calls are safe.
// Threads of one process share a Clique and read each other's buffers. Ranks in other processes meet in a
// directory in shared memory (/dev/shm): each writes its call and send buffer there as a file, and reads the
// others'. ncclCommInitRank tells the two apart: every rank first leaves a note naming its process there.
#include <nccl.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cuda/sim/device_memory.h"
#include "cuda/sim/settings.h"
#include "cuda/sim/streams.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"

namespace {

using qtune::sim::Fault;

thread_local std::string last_error;
thread_local int group_depth = 0;

ncclResult_t refuse(ncclResult_t result, std::string message) {
  last_error = std::move(message);
  return result;
}

enum class Kind { all_gather, reduce_scatter, all_reduce, broadcast };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::all_gather:
      return "ncclAllGather";
    case Kind::reduce_scatter:
      return "ncclReduceScatter";
    case Kind::all_reduce:
      return "ncclAllReduce";
    case Kind::broadcast:
      return "ncclBroadcast";
  }
  return "?";
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
  }
  return 0;
}

struct Call {
  Kind kind = Kind::all_reduce;
  size_t count = 0;  // elements per rank: sent (all_gather), received (reduce_scatter) or both
  ncclDataType_t type = ncclFloat32;
  ncclRedOp_t op = ncclSum;
  int root = 0;
  const void* send = nullptr;
  void* recv = nullptr;

  bool same_as(const Call& o) const {
    const bool reduces = kind == Kind::all_reduce || kind == Kind::reduce_scatter;
    return kind == o.kind && count == o.count && type == o.type && (!reduces || op == o.op) &&
           (kind != Kind::broadcast || root == o.root);
  }
  std::string describe() const {
    std::string text =
        std::string(kind_name(kind)) + " of " + std::to_string(count) + " elements of type " + std::to_string(type);
    if (kind == Kind::all_reduce || kind == Kind::reduce_scatter) text += " (op " + std::to_string(op) + ")";
    if (kind == Kind::broadcast) text += " (root " + std::to_string(root) + ")";
    return text;
  }
};

struct Meeting {
  std::vector<Call> calls;
  std::vector<bool> present;
  int arrived = 0, computed = 0, left = 0;
};

struct Clique {
  std::mutex mutex;
  std::condition_variable changed;
  int nranks = 0;
  std::vector<int> devices;  // by rank, -1 until joined
  int joined = 0;
  std::map<uint64_t, Meeting> meetings;  // by the collective's place in each rank's sequence
  std::string failure;                   // set once a collective failed: every later one fails too
};

std::mutex registry_mutex;
std::map<std::string, std::shared_ptr<Clique>> forming;  // cliques whose ranks are still joining

std::chrono::steady_clock::time_point deadline() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(qtune::sim::nccl_timeout_seconds());
}

// Reduces element i of every rank's buffer in rank order; accumulates in f32 for 16-bit floats and
// rounds once at the end.
template <class T, class A>
void reduce(const std::vector<const void*>& sources, size_t offset, size_t count, ncclRedOp_t op, void* out,
            A (*load)(const void*, size_t), void (*store)(void*, size_t, A)) {
  for (size_t i = 0; i < count; ++i) {
    A acc = load(sources[0], offset + i);
    for (size_t r = 1; r < sources.size(); ++r) {
      const A v = load(sources[r], offset + i);
      switch (op) {
        case ncclSum:
        case ncclAvg:
          acc = acc + v;
          break;
        case ncclProd:
          acc = acc * v;
          break;
        case ncclMax:
          acc = v > acc ? v : acc;
          break;
        case ncclMin:
          acc = v < acc ? v : acc;
          break;
      }
    }
    if (op == ncclAvg) acc = acc / static_cast<A>(sources.size());
    store(out, i, acc);
  }
}

template <class T>
T plain_load(const void* p, size_t i) {
  return static_cast<const T*>(p)[i];
}
template <class T>
void plain_store(void* p, size_t i, T v) {
  static_cast<T*>(p)[i] = v;
}
float bf16_load(const void* p, size_t i) {
  return qtune::numerics::bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
}
void bf16_store(void* p, size_t i, float v) { static_cast<uint16_t*>(p)[i] = qtune::numerics::f32_to_bf16_bits(v); }
float f16_load(const void* p, size_t i) { return qtune::numerics::f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]); }
void f16_store(void* p, size_t i, float v) { static_cast<uint16_t*>(p)[i] = qtune::numerics::f32_to_f16_bits(v); }

void reduce_any(ncclDataType_t t, const std::vector<const void*>& sources, size_t offset, size_t count, ncclRedOp_t op,
                void* out) {
  switch (t) {
    case ncclInt8:
      return reduce<int8_t, int8_t>(sources, offset, count, op, out, plain_load<int8_t>, plain_store<int8_t>);
    case ncclUint8:
      return reduce<uint8_t, uint8_t>(sources, offset, count, op, out, plain_load<uint8_t>, plain_store<uint8_t>);
    case ncclInt32:
      return reduce<int32_t, int32_t>(sources, offset, count, op, out, plain_load<int32_t>, plain_store<int32_t>);
    case ncclUint32:
      return reduce<uint32_t, uint32_t>(sources, offset, count, op, out, plain_load<uint32_t>, plain_store<uint32_t>);
    case ncclInt64:
      return reduce<int64_t, int64_t>(sources, offset, count, op, out, plain_load<int64_t>, plain_store<int64_t>);
    case ncclUint64:
      return reduce<uint64_t, uint64_t>(sources, offset, count, op, out, plain_load<uint64_t>, plain_store<uint64_t>);
    case ncclFloat16:
      return reduce<uint16_t, float>(sources, offset, count, op, out, f16_load, f16_store);
    case ncclBfloat16:
      return reduce<uint16_t, float>(sources, offset, count, op, out, bf16_load, bf16_store);
    case ncclFloat32:
      return reduce<float, float>(sources, offset, count, op, out, plain_load<float>, plain_store<float>);
    case ncclFloat64:
      return reduce<double, double>(sources, offset, count, op, out, plain_load<double>, plain_store<double>);
  }
}

}  // namespace

struct ncclComm {
  std::shared_ptr<Clique> clique;  // ranks in this process only
  std::string shared;              // ranks in several processes: the meeting directory's path stem
  int rank = 0, nranks = 0, device = 0;
  uint64_t next = 0;                 // the place of the next collective in this rank's sequence
  std::atomic<bool> aborted{false};  // ncclCommAbort: a collective waiting for other processes gives up
  int note = -1;                     // the locked note of a rank in several processes, closed when it leaves
};

namespace {

// This rank's output of a collective every rank has agreed on, computed from their send buffers.
std::vector<unsigned char> compute(const ncclComm& comm, const std::vector<Call>& calls) {
  const Call& mine = calls[static_cast<size_t>(comm.rank)];
  const size_t elem = type_size(mine.type);
  std::vector<const void*> sources;
  for (const Call& c : calls) sources.push_back(c.send);
  std::vector<unsigned char> out;
  switch (mine.kind) {
    case Kind::all_gather:
      out.resize(mine.count * elem * calls.size());
      for (size_t r = 0; r < calls.size(); ++r)
        std::memcpy(out.data() + r * mine.count * elem, sources[r], mine.count * elem);
      break;
    case Kind::broadcast:
      out.resize(mine.count * elem);
      std::memcpy(out.data(), sources[static_cast<size_t>(mine.root)], out.size());
      break;
    case Kind::all_reduce:
      out.resize(mine.count * elem);
      reduce_any(mine.type, sources, 0, mine.count, mine.op, out.data());
      break;
    case Kind::reduce_scatter:
      out.resize(mine.count * elem);
      reduce_any(mine.type, sources, static_cast<size_t>(comm.rank) * mine.count, mine.count, mine.op, out.data());
      break;
  }
  return out;
}

Fault fail_all(Clique& c, std::string message) {
  if (c.failure.empty()) c.failure = std::move(message);
  c.changed.notify_all();
  return {cudaErrorLaunchFailure, c.failure};
}

// Runs on the rank's stream.
Fault meet(const ncclComm& comm, uint64_t place, const Call& call) {
  Clique& c = *comm.clique;
  const auto n = static_cast<size_t>(comm.nranks);
  std::unique_lock<std::mutex> lock(c.mutex);
  if (!c.failure.empty()) return {cudaErrorLaunchFailure, c.failure};
  Meeting& m = c.meetings[place];
  if (m.calls.empty()) {
    m.calls.resize(n);
    m.present.assign(n, false);
  }
  m.calls[static_cast<size_t>(comm.rank)] = call;
  m.present[static_cast<size_t>(comm.rank)] = true;
  ++m.arrived;
  c.changed.notify_all();
  const std::string where =
      "collective #" + std::to_string(place) + " (" + call.describe() + ") on rank " + std::to_string(comm.rank);
  auto wait_for = [&](int Meeting::*counter, const char* stage) -> bool {
    const bool done =
        c.changed.wait_until(lock, deadline(), [&] { return m.*counter == comm.nranks || !c.failure.empty(); });
    if (done) return c.failure.empty();
    std::string missing;
    for (size_t r = 0; r < n; ++r)
      if (!m.present[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    fail_all(
        c, where + ": " +
               (missing.empty() ? std::string("ranks did not ") + stage : "rank(s) " + missing + " never reached it") +
               " within " + std::to_string(qtune::sim::nccl_timeout_seconds()) + " s (QTUNE_SIM_NCCL_TIMEOUT_S)");
    return false;
  };
  if (!wait_for(&Meeting::arrived, "arrive")) return {cudaErrorLaunchFailure, c.failure};
  for (size_t r = 0; r < n; ++r)
    if (!m.calls[r].same_as(m.calls[0]))
      return fail_all(c, "NCCL ranks disagree at collective #" + std::to_string(place) + ": rank 0 calls " +
                             m.calls[0].describe() + ", rank " + std::to_string(r) + " calls " + m.calls[r].describe());
  const std::vector<Call> calls = m.calls;
  lock.unlock();
  const std::vector<unsigned char> out = compute(comm, calls);
  lock.lock();
  ++m.computed;
  c.changed.notify_all();
  if (!wait_for(&Meeting::computed, "finish reading")) return {cudaErrorLaunchFailure, c.failure};
  lock.unlock();
  if (!out.empty()) std::memcpy(call.recv, out.data(), out.size());
  lock.lock();
  if (++m.left == comm.nranks) c.meetings.erase(place);
  return {};
}

namespace fs = std::filesystem;

// Where ranks in several processes meet: a directory per communicator, "qtune-sim-nccl-<id>", holding each
// rank's note (rank.<r>: "pid host device ranks", locked shared by its process while the communicator lives)
// and a directory per collective (c<place>).
constexpr std::string_view kMeetingPrefix = "qtune-sim-nccl-";

std::string read_whole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

fs::path meeting_root() {
  if (const std::string dir = qtune::sim::nccl_directory(); !dir.empty()) return dir;
  std::error_code ec;
  if (fs::is_directory("/dev/shm", ec)) return "/dev/shm";
  const fs::path tmp = fs::temp_directory_path(ec);
  return ec ? fs::path("/tmp") : tmp;
}

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

// The temporary name this thread writes `path` under before publishing it: two writers never mix.
fs::path part_of(const fs::path& path) {
  return path.string() + ".part." + std::to_string(getpid()) + "." +
         std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id()));
}

// Writes `bytes` to `path` whole, or not at all: the others see the file only once it is complete.
bool publish_file(const fs::path& path, const std::string& bytes) {
  const fs::path part = part_of(path);
  std::error_code ec;
  {
    std::ofstream out(part, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();  // a full file system shows at the close
    if (!out) {
      fs::remove(part, ec);
      return false;
    }
  }
  fs::rename(part, path, ec);
  if (ec) fs::remove(part, ec);
  return !ec;
}

// A rank's note: written, locked shared, then linked into place, so it is locked from the moment it exists and
// for as long as the returned descriptor stays open (the communicator's life). Returns -1 with errno set
// (EEXIST: this rank's note is there already).
int publish_note(const fs::path& path, const std::string& text) {
  const fs::path part = part_of(path);
  const int fd = ::open(part.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const bool written = ::flock(fd, LOCK_SH) == 0 &&
                       ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::link(part.c_str(), path.c_str()) == 0;
  const int error = errno;
  ::unlink(part.c_str());
  if (written) return fd;
  ::close(fd);
  errno = error;
  return -1;
}

// Removes the meeting directories of processes that ended without leaving (a job that failed or was killed):
// every note in it can be locked exclusively, so no live process holds one. A directory being joined holds a
// live rank's locked note, or none yet, and is kept.
void sweep_dead_meetings(const fs::path& root) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kMeetingPrefix, 0) != 0 || !entry.is_directory(ec)) continue;
    int notes = 0;
    bool dead = true;
    std::vector<int> held;
    for (const auto& file : fs::directory_iterator(entry.path(), ec)) {
      const std::string f = file.path().filename().string();
      if (f.rfind("rank.", 0) != 0 || f.find(".part") != std::string::npos) continue;
      ++notes;
      const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        held.push_back(fd);
      } else {
        dead = false;
        if (fd >= 0) ::close(fd);
      }
    }
    if (notes > 0 && dead) fs::remove_all(entry.path(), ec);
    for (const int fd : held) ::close(fd);
  }
}

// This rank is done with `dir`: it leaves `marker`<rank> there, and the rank that finds every rank's marker
// removes the directory.
void leave(const fs::path& dir, const std::string& marker, int rank, int nranks) {
  publish_file(dir / (marker + std::to_string(rank)), "");
  std::error_code ec;
  int done = 0;
  for (int r = 0; r < nranks; ++r) done += fs::exists(dir / (marker + std::to_string(r)), ec) ? 1 : 0;
  if (done == nranks) fs::remove_all(dir, ec);
}

// Waits until `dir` holds `prefix`<r> for every rank r, or a file "failed" (whose text is returned), or the
// deadline, or `aborted`. Returns "" once all are there.
std::string await_files(const fs::path& dir, const std::string& prefix, int nranks, const std::string& where,
                        const std::atomic<bool>* aborted = nullptr) {
  const auto until = deadline();
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    std::error_code ec;
    if (fs::exists(dir / "failed", ec)) return read_whole(dir / "failed");
    std::string missing;
    for (int r = 0; r < nranks; ++r)
      if (!fs::exists(dir / (prefix + std::to_string(r)), ec))
        missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    if (missing.empty()) return "";
    if (aborted != nullptr && aborted->load()) return where + ": the communicator was aborted (ncclCommAbort)";
    if (std::chrono::steady_clock::now() >= until) {
      const std::string text = where + ": rank(s) " + missing + " never reached it within " +
                               std::to_string(qtune::sim::nccl_timeout_seconds()) + " s (QTUNE_SIM_NCCL_TIMEOUT_S)";
      publish_file(dir / "failed", text);
      return text;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
}

// How many bytes of its send buffer a rank contributes to `call`.
size_t sent_bytes(const Call& call, int rank, int nranks) {
  const size_t bytes = call.count * type_size(call.type);
  switch (call.kind) {
    case Kind::reduce_scatter:
      return bytes * static_cast<size_t>(nranks);
    case Kind::broadcast:
      return rank == call.root ? bytes : 0;
    default:
      return bytes;
  }
}

// meet() for ranks in several processes, through the files of the collective's own directory.
Fault meet_across_processes(const ncclComm& comm, uint64_t place, const Call& call) {
  const fs::path dir = fs::path(comm.shared) / ("c" + std::to_string(place));
  const std::string where =
      "collective #" + std::to_string(place) + " (" + call.describe() + ") on rank " + std::to_string(comm.rank);
  if (comm.aborted) return {cudaErrorLaunchFailure, where + ": the communicator was aborted (ncclCommAbort)"};
  std::error_code ec;
  fs::create_directories(dir, ec);
  Call header = call;
  header.send = nullptr, header.recv = nullptr;
  std::string mine(reinterpret_cast<const char*>(&header), sizeof header);
  mine.append(static_cast<const char*>(call.send), sent_bytes(call, comm.rank, comm.nranks));
  if (!publish_file(dir / ("call." + std::to_string(comm.rank)), mine))
    return {cudaErrorLaunchFailure, where + ": cannot write to " + dir.string()};
  if (const std::string failure = await_files(dir, "call.", comm.nranks, where, &comm.aborted); !failure.empty())
    return {cudaErrorLaunchFailure, failure};
  std::vector<std::string> files(static_cast<size_t>(comm.nranks));
  std::vector<Call> calls(files.size());
  for (int r = 0; r < comm.nranks; ++r) {
    std::string& file = files[static_cast<size_t>(r)];
    file = read_whole(dir / ("call." + std::to_string(r)));
    Call& c = calls[static_cast<size_t>(r)];
    if (file.size() >= sizeof c) std::memcpy(&c, file.data(), sizeof c);
    if (file.size() < sizeof c || file.size() != sizeof c + sent_bytes(c, r, comm.nranks)) {
      const std::string text = where + ": rank " + std::to_string(r) + "'s file in " + dir.string() + " is damaged (" +
                               std::to_string(file.size()) + " bytes)";
      publish_file(dir / "failed", text);
      return {cudaErrorLaunchFailure, text};
    }
    c.send = file.data() + sizeof c;
  }
  for (size_t r = 0; r < calls.size(); ++r)
    if (!calls[r].same_as(calls[0])) {
      const std::string text = "NCCL ranks disagree at collective #" + std::to_string(place) + ": rank 0 calls " +
                               calls[0].describe() + ", rank " + std::to_string(r) + " calls " + calls[r].describe();
      publish_file(dir / "failed", text);
      return {cudaErrorLaunchFailure, text};
    }
  const std::vector<unsigned char> out = compute(comm, calls);
  if (!out.empty()) std::memcpy(call.recv, out.data(), out.size());
  leave(dir, "read.", comm.rank, comm.nranks);
  return {};
}

ncclResult_t check_buffer(const ncclComm& comm, const char* call, const char* what, const void* p, size_t bytes) {
  const auto a = qtune::sim::find_allocation(p, bytes);
  if (bytes > 0 && (!a || a->device != comm.device))
    return refuse(ncclInvalidArgument, std::string(call) + ": the " + what + " buffer (" + std::to_string(bytes) +
                                           " bytes) is not memory of cuda:" + std::to_string(comm.device) +
                                           ", the device of rank " + std::to_string(comm.rank));
  return ncclSuccess;
}

ncclResult_t enqueue_call(ncclComm_t comm, const Call& call, size_t send_bytes, size_t recv_bytes,
                          cudaStream_t stream) {
  const char* name = kind_name(call.kind);
  last_error.clear();
  if (comm == nullptr) return refuse(ncclInvalidArgument, std::string(name) + ": no communicator");
  if (type_size(call.type) == 0) return refuse(ncclInvalidArgument, std::string(name) + ": unknown data type");
  if (call.op < ncclSum || call.op > ncclAvg) return refuse(ncclInvalidArgument, std::string(name) + ": unknown op");
  CUstream_st* s = qtune::sim::resolve_stream(stream);
  if (s == nullptr || s->device != comm->device)
    return refuse(ncclInvalidArgument, std::string(name) +
                                           ": the stream is not one of cuda:" + std::to_string(comm->device) +
                                           ", the device of rank " + std::to_string(comm->rank));
  if (const ncclResult_t r = check_buffer(*comm, name, "send", call.send, send_bytes); r != ncclSuccess) return r;
  if (const ncclResult_t r = check_buffer(*comm, name, "receive", call.recv, recv_bytes); r != ncclSuccess) return r;
  const uint64_t place = comm->next++;
  qtune::sim::enqueue(s, [comm, place, call] {
    return comm->shared.empty() ? meet(*comm, place, call) : meet_across_processes(*comm, place, call);
  });
  return ncclSuccess;
}

}  // namespace

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
  }
  return "unknown result code";
}

const char* ncclGetLastError(ncclComm_t) { return last_error.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::mutex mutex;
  // Seeded from several words, and the process and time: ids of concurrent jobs must not collide (their meeting
  // directories are named after them).
  static std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(),
                       device(),
                       device(),
                       device(),
                       static_cast<unsigned>(getpid()),
                       static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())};
    return std::mt19937_64(seed);
  }();
  std::lock_guard<std::mutex> lock(mutex);
  for (size_t i = 0; i < sizeof id->internal; i += 8) {
    const uint64_t r = rng();
    std::memcpy(id->internal + i, &r, 8);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  const int device = qtune::sim::current_device();
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return refuse(ncclInvalidArgument,
                  "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  // Every rank leaves a note (process, host, device, ranks) in the id's directory and reads the others': ranks that
  // are threads of this process meet in a Clique, ranks in several processes in files.
  last_error.clear();
  static const char* hex = "0123456789abcdef";
  std::string name(kMeetingPrefix);
  for (size_t i = 0; i < 16; ++i) {
    const auto byte = static_cast<unsigned char>(id.internal[i]);
    name += hex[byte >> 4], name += hex[byte & 15];
  }
  const fs::path root = meeting_root(), join = root / name;
  const std::string host = host_name(), me = std::to_string(getpid()) + " " + host;
  sweep_dead_meetings(root);
  std::error_code ec;
  fs::create_directories(join, ec);
  const std::string rank_text =
      "ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(nranks) + ")";
  const int note = publish_note(join / ("rank." + std::to_string(rank)),
                                me + " " + std::to_string(device) + " " + std::to_string(nranks));
  if (note < 0) {
    if (errno == EEXIST)
      return refuse(ncclInvalidUsage, rank_text + ": rank " + std::to_string(rank) + " joined twice");
    return refuse(ncclSystemError, rank_text + ": cannot write to " + join.string() + ": " + std::strerror(errno));
  }
  // A refusal from here on releases the note (the directory is swept once no rank holds one).
  const auto refuse_joined = [&](ncclResult_t result, std::string message) {
    ::close(note);
    return refuse(result, std::move(message));
  };
  if (const std::string failure = await_files(join, "rank.", nranks, rank_text); !failure.empty())
    return refuse_joined(ncclSystemError, failure);
  struct Note {
    std::string process;  // "pid host"
    int device = -1, ranks = 0;
  };
  std::vector<Note> notes;
  for (int r = 0; r < nranks; ++r) {
    std::istringstream text(read_whole(join / ("rank." + std::to_string(r))));
    std::string pid, their_host;
    Note n;
    text >> pid >> their_host >> n.device >> n.ranks;
    n.process = pid + " " + their_host;
    if (n.ranks != nranks)
      return refuse_joined(ncclInvalidUsage,
                           rank_text + ": rank " + std::to_string(r) + " says " + std::to_string(n.ranks) + " ranks");
    notes.push_back(n);
  }
  bool alone = true;
  for (const Note& n : notes) alone = alone && n.process == me;
  if (alone) {
    // Threads of this process: the directory is done with once every rank has read the notes.
    ::close(note);
    leave(join, "read.", rank, nranks);
  } else {
    // One GPU per rank, as NCCL demands: no two ranks on the same device of the same host.
    for (int r = 0; r < nranks; ++r) {
      const Note& n = notes[static_cast<size_t>(r)];
      if (r != rank && n.device == device && n.process.substr(n.process.find(' ')) == " " + host)
        return refuse_joined(ncclInvalidUsage, "ncclCommInitRank: ranks " + std::to_string(std::min(r, rank)) +
                                                   " and " + std::to_string(std::max(r, rank)) +
                                                   " both use cuda:" + std::to_string(device) + " of " + host +
                                                   " (one GPU per rank; QTUNE_SIM_DEVICES sets how many there are)");
    }
    *comm = new ncclComm{nullptr, join.string(), rank, nranks, device, 0};
    (*comm)->note = note;
    return ncclSuccess;
  }
  const std::string key(id.internal, sizeof id.internal);
  std::shared_ptr<Clique> clique;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto& slot = forming[key];
    if (!slot) {
      slot = std::make_shared<Clique>();
      slot->nranks = nranks;
      slot->devices.assign(static_cast<size_t>(nranks), -1);
    }
    clique = slot;
  }
  std::unique_lock<std::mutex> lock(clique->mutex);
  if (clique->nranks != nranks)
    return refuse(ncclInvalidUsage, "ncclCommInitRank: rank " + std::to_string(rank) + " says " +
                                        std::to_string(nranks) + " ranks, another rank of the id said " +
                                        std::to_string(clique->nranks));
  if (clique->devices[static_cast<size_t>(rank)] != -1)
    return refuse(ncclInvalidUsage, "ncclCommInitRank: rank " + std::to_string(rank) + " joined twice");
  for (int r = 0; r < nranks; ++r)
    if (clique->devices[static_cast<size_t>(r)] == device)
      return refuse(ncclInvalidUsage, "ncclCommInitRank: ranks " + std::to_string(r) + " and " + std::to_string(rank) +
                                          " both use cuda:" + std::to_string(device) + " (one GPU per rank)");
  clique->devices[static_cast<size_t>(rank)] = device;
  if (++clique->joined == nranks) {
    std::lock_guard<std::mutex> registry_lock(registry_mutex);
    forming.erase(key);
  }
  clique->changed.notify_all();
  if (!clique->changed.wait_until(lock, deadline(), [&] { return clique->joined == nranks; }))
    return refuse(ncclSystemError, "ncclCommInitRank: only " + std::to_string(clique->joined) + " of " +
                                       std::to_string(nranks) + " ranks joined within " +
                                       std::to_string(qtune::sim::nccl_timeout_seconds()) +
                                       " s (QTUNE_SIM_NCCL_TIMEOUT_S)");
  *comm = new ncclComm{clique, "", rank, nranks, device, 0};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return refuse(ncclInvalidArgument, "ncclCommDestroy: no communicator");
  // Queued collectives refer to the communicator: they run first.
  qtune::sim::drain_device(comm->device);
  if (!comm->shared.empty()) {
    // The last rank of the processes to leave removes the meeting directory (a killed job's goes at the next
    // start, sweep_dead_meetings).
    leave(comm->shared, "gone.", comm->rank, comm->nranks);
    ::close(comm->note);
  }
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm != nullptr) comm->aborted = true;
  return ncclCommDestroy(comm);
}

ncclResult_t ncclCommCount(ncclComm_t comm, int* count) {
  *count = comm->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(ncclComm_t comm, int* rank) {
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(ncclComm_t comm, int* device) {
  *device = comm->device;
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  const size_t bytes = send_count * type_size(type);
  return enqueue_call(comm, {Kind::all_gather, send_count, type, ncclSum, 0, send, recv}, bytes,
                      comm != nullptr ? bytes * static_cast<size_t>(comm->nranks) : 0, stream);
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recv_count, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = recv_count * type_size(type);
  return enqueue_call(comm, {Kind::reduce_scatter, recv_count, type, op, 0, send, recv},
                      comm != nullptr ? bytes * static_cast<size_t>(comm->nranks) : 0, bytes, stream);
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  return enqueue_call(comm, {Kind::all_reduce, count, type, op, 0, send, recv}, bytes, bytes, stream);
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  if (comm != nullptr && (root < 0 || root >= comm->nranks))
    return refuse(ncclInvalidArgument,
                  "ncclBroadcast: root " + std::to_string(root) + " of " + std::to_string(comm->nranks) + " ranks");
  // Only the root's send buffer is read.
  const bool is_root = comm != nullptr && comm->rank == root;
  return enqueue_call(comm, {Kind::broadcast, count, type, ncclSum, root, send, recv}, is_root ? bytes : 0, bytes,
                      stream);
}

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return refuse(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  --group_depth;
  return ncclSuccess;
}
