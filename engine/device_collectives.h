#pragma once
// Collectives between the GPUs of a job (NCCL on the CUDA backend), as the Backend offers them to dist/'s
// NcclCommunicator: each call is queued on the device's stream and returns at once; a Marker placed after it
// tells, without blocking, when everything queued before it has completed (dist/ polls it against its
// deadline and aborts the group when one passes). Buffers are device memory of this rank's device.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/dtype.h"

namespace qtune {

class DeviceCollectives {
 public:
  // Completion of the work queued before it.
  class Marker {
   public:
    virtual ~Marker() = default;
    // True once complete; throws naming the error when the work failed (a peer aborted, a transport error).
    virtual bool done() = 0;
  };

  virtual ~DeviceCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // recv: size() blocks of `count` elements.
  virtual void all_gather(const void* send, void* recv, int64_t count, DType dtype) = 0;
  // send: size() blocks of `count`; recv: this rank's block summed (max when `max`) over the ranks.
  virtual void reduce_scatter(const void* send, void* recv, int64_t count, DType dtype, bool max) = 0;
  virtual void all_reduce(void* buffer, int64_t count, DType dtype, bool max) = 0;
  virtual void broadcast(void* buffer, int64_t count, DType dtype, int root) = 0;
  virtual std::unique_ptr<Marker> marker() = 0;
  // Ends the group at once (ncclCommAbort): queued collectives give up; nothing may be called afterwards.
  virtual void abort() = 0;
};

}  // namespace qtune
