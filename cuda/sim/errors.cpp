#include "cuda/sim/errors.h"

#include <mutex>

namespace qtune::sim {
namespace {

thread_local cudaError_t last_code = cudaSuccess;
// Kept after cudaGetLastError clears last_code: the caller asks for the string after taking the code.
thread_local cudaError_t message_code = cudaSuccess;
thread_local std::string last_message;

std::mutex sticky_mutex;
cudaError_t sticky_code = cudaSuccess;
std::string sticky_message;

}  // namespace

cudaError_t fail(cudaError_t code, std::string message) {
  last_code = code;
  message_code = code;
  last_message = std::move(message);
  return code;
}

cudaError_t take_last_error() {
  if (const cudaError_t s = sticky_error(); s != cudaSuccess) return s;
  const cudaError_t code = last_code;
  last_code = cudaSuccess;
  return code;
}

cudaError_t peek_last_error() {
  if (const cudaError_t s = sticky_error(); s != cudaSuccess) return s;
  return last_code;
}

void set_sticky(cudaError_t code, std::string message) {
  std::lock_guard<std::mutex> lock(sticky_mutex);
  if (sticky_code != cudaSuccess) return;  // the first fault is the one worth reading
  sticky_code = code;
  sticky_message = std::move(message);
}

cudaError_t sticky_error() {
  std::lock_guard<std::mutex> lock(sticky_mutex);
  return sticky_code;
}

void clear_sticky_error() {
  std::lock_guard<std::mutex> lock(sticky_mutex);
  sticky_code = cudaSuccess;
  sticky_message.clear();
}

const char* message_for(cudaError_t code) {
  {
    std::lock_guard<std::mutex> lock(sticky_mutex);
    if (code == sticky_code && !sticky_message.empty()) return sticky_message.c_str();
  }
  if (code == message_code && !last_message.empty()) return last_message.c_str();
  return nullptr;
}

}  // namespace qtune::sim
