#include "dist/mpi_communicator.h"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace qtune::dist {
namespace {

using Clock = std::chrono::steady_clock;

// What the main thread is waiting in, for a rank stopped by a signal while it waits: the launcher sends
// SIGTERM to every other rank when one dies, and the message then says where each one was.
char waiting_text[512];
volatile std::sig_atomic_t waiting_length = 0;

extern "C" void report_and_die(int signal_number) {
  if (waiting_length > 0) {
    const ssize_t written = write(STDERR_FILENO, waiting_text, static_cast<size_t>(waiting_length));
    (void)written;
  }
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void set_waiting(const std::string& text) {
  waiting_length = 0;
  const size_t n = std::min(text.size(), sizeof waiting_text);
  std::memcpy(waiting_text, text.data(), n);
  waiting_length = static_cast<std::sig_atomic_t>(n);
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

// MPI for the life of the process: initialized by the first communicator, finalized at exit when the
// program ends normally (a program that aborts never finalizes, and the launcher ends the job).
class MpiSession {
 public:
  static void ensure() { static MpiSession session; }

 private:
  MpiSession() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // Only the main thread calls MPI; OpenMP workers never do.
      const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      QTUNE_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed: ", mpi_error(rc));
      owns_ = true;
    }
    std::signal(SIGTERM, report_and_die);
  }
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  bool owns_ = false;
};

int checked_count(int64_t bytes, const CallSignature& call) {
  QTUNE_CHECK(bytes <= INT_MAX, describe(call), ": ", bytes,
              " bytes per rank is over MPI's 2 GiB per call: split the buffer");
  return static_cast<int>(bytes);
}

}  // namespace

struct MpiCommunicator::State {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  CommunicatorOptions options;
  int64_t sequence = 1;  // the number of the next collective

  [[noreturn]] void fail(const CallSignature& call, const std::string& why) const {
    throw CollectiveError(
        detail::concat("rank ", rank, ": ", describe(call), " (collective #", call.sequence, ") ", why));
  }
  void check(int rc, const CallSignature& call, const char* function) const {
    if (rc != MPI_SUCCESS) fail(call, detail::concat("failed in ", function, ": ", mpi_error(rc)));
  }
};

namespace {

// A started MPI request and what completes it on this rank (the rank-order reduction of the exchanged
// blocks). Destroyed unwaited, it waits; a failure there ends the job, as nothing can throw.
class MpiWork final : public Work {
 public:
  MpiWork(const MpiCommunicator::State& state, CallSignature call, MPI_Request request, std::function<void()> finish)
      : state_(state), call_(call), request_(request), finish_(std::move(finish)) {}

  ~MpiWork() override {
    if (done_) return;
    try {
      wait();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::fflush(stderr);
      MPI_Abort(state_.comm, 1);
    }
  }

  void wait() override { wait(state_.options.timeout); }
  void wait(std::chrono::milliseconds limit) override {
    if (done_) return;
    done_ = true;  // also after a failure: the request is abandoned with the job
    const Clock::time_point deadline = Clock::now() + limit;
    set_waiting(detail::concat("rank ", state_.rank, ": stopped while waiting in ", describe(call_), " (collective #",
                               call_.sequence, "): another rank failed or was killed (see its message)\n"));
    int complete = 0;
    for (int polls = 0;; ++polls) {
      state_.check(MPI_Test(&request_, &complete, MPI_STATUS_IGNORE), call_, "MPI_Test");
      if (complete) break;
      if (Clock::now() > deadline) {
        waiting_length = 0;
        state_.fail(call_, detail::concat("did not complete within ", std::chrono::duration<double>(limit).count(),
                                          " s: a rank is missing from it (dead, stuck, or in another collective; "
                                          "check_calls compares the ranks' calls)"));
      }
      // Spin briefly for short collectives, then poll without burning the core.
      if (polls > 200) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    waiting_length = 0;
    if (finish_) finish_();
  }

 private:
  const MpiCommunicator::State& state_;
  CallSignature call_;
  MPI_Request request_;
  std::function<void()> finish_;
  bool done_ = false;
};

}  // namespace

namespace {

// A reduction: `start` exchanges every rank's block of out.count elements into a staging buffer in rank
// order (an MPI call given the buffer, the block's bytes and the request to fill); once that completes,
// the blocks are reduced into `out` in rank order.
template <class Start>
std::unique_ptr<Work> exchange_then_reduce(const MpiCommunicator::State& s, const CallSignature& call,
                                           const Buffer& out, Reduce op, const char* function, Start start) {
  const int bytes = checked_count(out.bytes(), call);
  auto parts = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(out.bytes()) * s.size);
  MPI_Request request;
  s.check(start(parts->data(), bytes, &request), call, function);
  const int ranks = s.size;
  return std::make_unique<MpiWork>(s, call, request, [parts, out, op, ranks] {
    reduce_in_rank_order(op, out.dtype, parts->data(), ranks, out.count, out.count, out.data);
  });
}

}  // namespace

MpiCommunicator::MpiCommunicator(std::unique_ptr<State> state) : s_(std::move(state)) {}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && s_->comm != MPI_COMM_NULL) MPI_Comm_free(&s_->comm);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::world(CommunicatorOptions options) {
  QTUNE_CHECK(options.timeout.count() > 0, "communicator timeout must be > 0 ms, got ", options.timeout.count());
  MpiSession::ensure();
  auto state = std::make_unique<State>();
  state->options = options;
  QTUNE_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &state->comm) == MPI_SUCCESS, "MPI_Comm_dup of MPI_COMM_WORLD failed");
  // Errors come back as codes, turned into CollectiveErrors naming the collective.
  MPI_Comm_set_errhandler(state->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(state->comm, &state->rank);
  MPI_Comm_size(state->comm, &state->size);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(state)));
}

int MpiCommunicator::rank() const { return s_->rank; }
int MpiCommunicator::size() const { return s_->size; }

void MpiCommunicator::begin(const CallSignature& call, const Buffer& send, const Buffer& recv) {
  check_buffers(call, s_->size, send, recv);
  QTUNE_CHECK(send.device.is_cpu(), describe(call), ": MPI moves CPU buffers, got ", send.device.str(),
              " (GPU tensors go through the NCCL communicator)");
  ++s_->sequence;
  if (!s_->options.check_calls) return;
  // Every rank's call, gathered under the deadline of the call itself.
  std::vector<CallSignature> calls(static_cast<size_t>(s_->size));
  MPI_Request request;
  s_->check(MPI_Iallgather(&call, sizeof(CallSignature), MPI_BYTE, calls.data(), sizeof(CallSignature), MPI_BYTE,
                           s_->comm, &request),
            call, "MPI_Iallgather (check_calls)");
  MpiWork(*s_, call, request, nullptr).wait();
  if (const std::string mismatch = find_mismatch(calls); !mismatch.empty())
    throw CollectiveError(detail::concat("rank ", s_->rank, ": the ranks call different collectives: ", mismatch));
}

std::unique_ptr<Work> MpiCommunicator::all_gather(const Buffer& send, const Buffer& recv) {
  const CallSignature call{s_->sequence, send.count, recv.count, -1, Collective::all_gather, Reduce::sum, send.dtype};
  begin(call, send, recv);
  const int bytes = checked_count(send.bytes(), call);
  const bool in_place = static_cast<char*>(recv.data) + static_cast<int64_t>(s_->rank) * bytes == send.data;
  MPI_Request request;
  s_->check(MPI_Iallgather(in_place ? MPI_IN_PLACE : send.data, bytes, MPI_BYTE, recv.data, bytes, MPI_BYTE, s_->comm,
                           &request),
            call, "MPI_Iallgather");
  return std::make_unique<MpiWork>(*s_, call, request, nullptr);
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) {
  const CallSignature call{s_->sequence, send.count, recv.count, -1, Collective::reduce_scatter, op, send.dtype};
  begin(call, send, recv);
  // Every rank's block for this rank, in rank order.
  return exchange_then_reduce(*s_, call, recv, op, "MPI_Ialltoall", [&](void* parts, int bytes, MPI_Request* r) {
    return MPI_Ialltoall(send.data, bytes, MPI_BYTE, parts, bytes, MPI_BYTE, s_->comm, r);
  });
}

std::unique_ptr<Work> MpiCommunicator::all_reduce(const Buffer& buffer, Reduce op) {
  const CallSignature call{s_->sequence, buffer.count, buffer.count, -1, Collective::all_reduce, op, buffer.dtype};
  begin(call, buffer, buffer);
  return exchange_then_reduce(*s_, call, buffer, op, "MPI_Iallgather", [&](void* parts, int bytes, MPI_Request* r) {
    return MPI_Iallgather(buffer.data, bytes, MPI_BYTE, parts, bytes, MPI_BYTE, s_->comm, r);
  });
}

std::unique_ptr<Work> MpiCommunicator::broadcast(const Buffer& buffer, int root) {
  const CallSignature call{s_->sequence,          buffer.count, buffer.count, root,
                           Collective::broadcast, Reduce::sum,  buffer.dtype};
  begin(call, buffer, buffer);
  MPI_Request request;
  s_->check(MPI_Ibcast(buffer.data, checked_count(buffer.bytes(), call), MPI_BYTE, root, s_->comm, &request), call,
            "MPI_Ibcast");
  return std::make_unique<MpiWork>(*s_, call, request, nullptr);
}

std::unique_ptr<Work> MpiCommunicator::barrier() {
  const CallSignature call{s_->sequence, 0, 0, -1, Collective::barrier, Reduce::sum, DType::u8};
  begin(call, Buffer{nullptr, 0, DType::u8}, Buffer{nullptr, 0, DType::u8});
  MPI_Request request;
  s_->check(MPI_Ibarrier(s_->comm, &request), call, "MPI_Ibarrier");
  return std::make_unique<MpiWork>(*s_, call, request, nullptr);
}

void MpiCommunicator::abort(const std::string& reason, int code) {
  std::fprintf(stderr, "%s%s\n", reason.rfind("rank ", 0) == 0 ? "" : detail::concat("rank ", s_->rank, ": ").c_str(),
               reason.c_str());
  std::fflush(stderr);
  MPI_Abort(s_->comm, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps the promise if it did
}

}  // namespace qtune::dist
