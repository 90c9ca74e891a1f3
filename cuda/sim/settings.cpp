#include "cuda/sim/settings.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace qtune::sim {
namespace {

// A malformed value stops the program: a simulator that silently ran another configuration than the
// one asked for would make a CI run under "two seeds" run one.
uint64_t env_number(const char* name, uint64_t fallback, uint64_t low, uint64_t high) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (*end != '\0' || v < low || v > high || text[0] == '-') {
    std::fprintf(stderr, "qtune CUDA simulator: %s=%s is not a number in [%llu, %llu]\n", name, text,
                 static_cast<unsigned long long>(low), static_cast<unsigned long long>(high));
    std::exit(2);
  }
  return v;
}

std::atomic<uint64_t>& seed_value() {
  static std::atomic<uint64_t> value{env_number("QTUNE_SIM_SEED", 1, 0, UINT64_MAX)};
  return value;
}

}  // namespace

uint64_t seed() { return seed_value().load(); }
void set_seed(uint64_t s) { seed_value().store(s); }

int device_count() {
  static const int count = static_cast<int>(env_number("QTUNE_SIM_DEVICES", 1, 1, 8));
  return count;
}

size_t device_memory_bytes() {
  static const size_t bytes = static_cast<size_t>(env_number("QTUNE_SIM_MEMORY_MB", 16384, 1, 1 << 24)) << 20;
  return bytes;
}

int nccl_timeout_seconds() { return static_cast<int>(env_number("QTUNE_SIM_NCCL_TIMEOUT_S", 60, 1, 86400)); }

std::string nccl_directory() {
  const char* dir = std::getenv("QTUNE_SIM_NCCL_DIR");
  return dir != nullptr ? dir : "";
}

}  // namespace qtune::sim
