#include "dist/local_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qtune::dist {
namespace {

class DoneWork final : public Work {
 public:
  void wait() override {}
  void wait(std::chrono::milliseconds) override {}
};

}  // namespace

std::unique_ptr<Work> LocalCommunicator::copy(const CallSignature& call, const Buffer& send, const Buffer& recv) {
  check_buffers(call, 1, send, recv);
  ++sequence_;
  if (send.data != recv.data && send.bytes() > 0) {
    QTUNE_CHECK(send.device.is_cpu(), describe(call), " on one rank copies CPU buffers only; ", send.device.str(),
                " buffers go through the device's communicator (or pass the same buffer as send and recv)");
    std::memmove(recv.data, send.data, static_cast<size_t>(send.bytes()));
  }
  return std::make_unique<DoneWork>();
}

std::unique_ptr<Work> LocalCommunicator::all_gather(const Buffer& send, const Buffer& recv) {
  return copy({sequence_, send.count, recv.count, -1, Collective::all_gather, Reduce::sum, send.dtype}, send, recv);
}

std::unique_ptr<Work> LocalCommunicator::reduce_scatter(const Buffer& send, const Buffer& recv, Reduce op) {
  return copy({sequence_, send.count, recv.count, -1, Collective::reduce_scatter, op, send.dtype}, send, recv);
}

std::unique_ptr<Work> LocalCommunicator::all_reduce(const Buffer& buffer, Reduce op) {
  return copy({sequence_, buffer.count, buffer.count, -1, Collective::all_reduce, op, buffer.dtype}, buffer, buffer);
}

std::unique_ptr<Work> LocalCommunicator::broadcast(const Buffer& buffer, int root) {
  return copy({sequence_, buffer.count, buffer.count, root, Collective::broadcast, Reduce::sum, buffer.dtype}, buffer,
              buffer);
}

std::unique_ptr<Work> LocalCommunicator::barrier() {
  ++sequence_;
  return std::make_unique<DoneWork>();
}

void LocalCommunicator::abort(const std::string& reason, int code) {
  std::fprintf(stderr, "rank 0: %s\n", reason.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace qtune::dist
