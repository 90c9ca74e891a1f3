#include "engine/storage.h"

#include "engine/check.h"

namespace qtune {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  std::shared_ptr<Storage> s(new Storage());
  s->allocator_ = &allocator_for(device);
  s->data_ = s->allocator_->allocate(nbytes);
  s->nbytes_ = nbytes;
  s->device_ = device;
  return s;
}

std::shared_ptr<Storage> Storage::reserve(size_t nbytes, Device device) {
  std::shared_ptr<Storage> s(new Storage());
  s->allocator_ = &allocator_for(device);
  s->nbytes_ = nbytes;
  s->device_ = device;
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device device, std::function<void()> release) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->release_ = std::move(release);
  return s;
}

void Storage::free_data() {
  QTUNE_CHECK(allocator_ != nullptr,
              "Storage::free_data on memory owned elsewhere (a mapped file or a caller's buffer)");
  if (data_ != nullptr) allocator_->deallocate(data_, nbytes_);
  data_ = nullptr;
}

void Storage::reallocate() {
  QTUNE_CHECK(allocator_ != nullptr,
              "Storage::reallocate on memory owned elsewhere (a mapped file or a caller's buffer)");
  if (data_ == nullptr && nbytes_ > 0) data_ = allocator_->allocate(nbytes_);
}

Storage::~Storage() {
  if (allocator_ != nullptr && data_ != nullptr) allocator_->deallocate(data_, nbytes_);
  if (release_) release_();
}

}  // namespace qtune
