#pragma once
// Collectives across the ranks of a job (docs/distributed.md). A Communicator starts a collective and
// returns its Work at once; Work::wait() returns when this rank's output is complete, or throws
// CollectiveError when the collective outlives the communicator's deadline (a peer died, hangs, or
// called another collective). Every rank calls the same collectives in the same order, each with the
// same sizes; with CommunicatorOptions::check_calls the ranks compare their calls first and a mismatch
// is an error naming both, not a hang.
//
// Reductions are defined in rank order: the result is rank 0's value, then rank 1's added to it (rounded
// to the dtype), and so on, the same sum one process gets by accumulating the ranks' contributions one
// after another. On CPU that makes an N-rank run equal to a one-rank run bit for bit.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/dtype.h"

namespace qtune {
class Tensor;
}

namespace qtune::dist {

enum class Collective : uint8_t { all_gather, reduce_scatter, all_reduce, broadcast, barrier };
std::string_view collective_name(Collective c);

enum class Reduce : uint8_t { sum, max };
std::string_view reduce_name(Reduce r);

// `count` contiguous elements of `dtype` in memory of `device`.
struct Buffer {
  void* data = nullptr;
  int64_t count = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu();
  int64_t bytes() const { return count * static_cast<int64_t>(dtype_size(dtype)); }
};
// A contiguous tensor's elements (throws naming the shape for a strided view).
Buffer buffer_of(const Tensor& t);

// A collective that did not complete: past its deadline, refused by the transport, or called differently
// by the ranks. The communicator is unusable afterwards; the message starts with "rank R:".
class CollectiveError : public Error {
 public:
  explicit CollectiveError(const std::string& what) : Error(what) {}
};

// A started collective.
class Work {
 public:
  virtual ~Work() = default;
  // Returns once this rank's output is complete. The deadline runs from this call, not from the start: a rank
  // that computes between starting a collective (a prefetch) and waiting for it does not use up its time.
  virtual void wait() = 0;                                 // within CommunicatorOptions::timeout
  virtual void wait(std::chrono::milliseconds limit) = 0;  // within `limit` (waiting while a rank writes a file)
};

struct CommunicatorOptions {
  // How long a rank waits for a collective to complete before it gives up.
  std::chrono::milliseconds timeout{30000};
  // Before each collective, the ranks exchange what they are calling and stop on a difference.
  bool check_calls = false;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view kind() const = 0;  // "local", "mpi", "nccl"

  // recv holds size() blocks of send.count elements: block r is rank r's send.
  virtual std::unique_ptr<Work> all_gather(const Buffer& send, const Buffer& recv) = 0;
  // send holds size() blocks of recv.count elements; recv = block rank() reduced over the ranks.
  virtual std::unique_ptr<Work> reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) = 0;
  // buffer = buffer reduced over the ranks, in place.
  virtual std::unique_ptr<Work> all_reduce(const Buffer& buffer, Reduce op) = 0;
  // buffer = root's buffer.
  virtual std::unique_ptr<Work> broadcast(const Buffer& buffer, int root) = 0;
  virtual std::unique_ptr<Work> barrier() = 0;

  // Stops every rank of the job with exit status `code` after printing `reason` (prefixed with this rank).
  [[noreturn]] virtual void abort(const std::string& reason, int code) = 0;
};

// ---- shared by the communicators --------------------------------------------------------------------

// What one rank calls: compared across ranks when check_calls is on.
struct CallSignature {
  int64_t sequence = 0;  // the collective's number on its communicator, from 1
  int64_t send_count = 0, recv_count = 0;
  int32_t root = -1;
  Collective kind = Collective::barrier;
  Reduce op = Reduce::sum;
  DType dtype = DType::f32;
};
std::string describe(const CallSignature& call);  // "all_reduce (sum) of 1024 f32"
// The first rank whose call differs from rank 0's, as "collective #7: rank 0 calls ..., rank 2 calls ...";
// empty when all agree.
std::string find_mismatch(const std::vector<CallSignature>& by_rank);

// Checks a collective's buffers against each other and the world size; throws naming the collective.
void check_buffers(const CallSignature& call, int world_size, const Buffer& send, const Buffer& recv);

// out[i] = parts[0][i] op parts[1][i] op ... in rank order, each step rounded to dtype. parts holds `ranks`
// blocks of `count` elements, `stride` elements apart; out may alias block 0.
void reduce_in_rank_order(Reduce op, DType dtype, const void* parts, int ranks, int64_t count, int64_t stride,
                          void* out);

}  // namespace qtune::dist
