#pragma once
#include <cstddef>
#include <functional>
#include <memory>

#include "engine/allocator.h"

namespace qtune {

// A block of device memory. Owned through shared_ptr by every Tensor view of it.
class Storage {
 public:
  // Allocates nbytes from the device's allocator.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // nbytes of the device's allocator not taken yet (has_data() false until reallocate()): a tensor that
  // exists only as a shape until a sharded load fills the piece a rank keeps.
  static std::shared_ptr<Storage> reserve(size_t nbytes, Device device);
  // Wraps memory owned elsewhere (an mmap'ed file, a caller's buffer); `release` runs when the
  // last view goes away. Not counted in the allocator's statistics.
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device device, std::function<void()> release);

  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  // FSDP keeps a sharded parameter's full storage only around its use, while tensors that view it (a module's
  // slot, autograd's saved tensors) stay alive: free_data() gives the memory back (data() becomes null) and
  // reallocate() takes nbytes() again, contents undefined. Only for storage this class allocated.
  void free_data();
  void reallocate();
  bool has_data() const { return data_ != nullptr || nbytes_ == 0; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::function<void()> release_;
};

}  // namespace qtune
