#include "cuda/sim/device_memory.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "cuda/sim/settings.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define QTUNE_SIM_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define QTUNE_SIM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define QTUNE_SIM_POISON(p, n) ((void)(p), (void)(n))
#define QTUNE_SIM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace qtune::sim {
namespace {

// 256 bytes, as cudaMalloc aligns.
constexpr size_t kAlignment = 256;

struct Registry {
  std::recursive_mutex mutex;
  std::map<uintptr_t, Allocation> allocations;  // by begin
  std::vector<size_t> used;
  int open = 0;  // live DeviceAccess scopes
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: backends free memory during static destruction
  return *r;
}

void* allocate(int device, size_t bytes, bool mapped = false) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  if (device >= 0) {
    if (r.used.size() < static_cast<size_t>(device_count())) r.used.resize(static_cast<size_t>(device_count()), 0);
    if (r.used[static_cast<size_t>(device)] + bytes > device_memory_bytes()) return nullptr;
  }
  void* p = nullptr;
  // At least one byte, so that every allocation has its own address and its own sanitizer red zone.
  if (posix_memalign(&p, kAlignment, bytes > 0 ? bytes : 1) != 0) return nullptr;
  r.allocations[reinterpret_cast<uintptr_t>(p)] = {reinterpret_cast<uintptr_t>(p), bytes, device, mapped};
  if (device >= 0) {
    r.used[static_cast<size_t>(device)] += bytes;
    if (r.open == 0) QTUNE_SIM_POISON(p, bytes);
  }
  return p;
}

bool release(void* ptr, bool device) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == r.allocations.end() || (it->second.device >= 0) != device) return false;
  if (device) {
    r.used[static_cast<size_t>(it->second.device)] -= it->second.bytes;
    QTUNE_SIM_UNPOISON(ptr, it->second.bytes);
  }
  r.allocations.erase(it);
  std::free(ptr);
  return true;
}

}  // namespace

void* device_allocate(int device, size_t bytes) { return allocate(device, bytes); }
bool device_free(void* ptr) { return release(ptr, true); }
void* pinned_allocate(size_t bytes, bool mapped) { return allocate(-1, bytes, mapped); }
bool pinned_free(void* ptr) { return release(ptr, false); }

size_t device_used(int device) {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  return static_cast<size_t>(device) < r.used.size() ? r.used[static_cast<size_t>(device)] : 0;
}

std::optional<Allocation> find_allocation(const void* ptr, size_t bytes) {
  Registry& r = registry();
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  auto it = r.allocations.upper_bound(p);
  if (it == r.allocations.begin()) return std::nullopt;
  --it;
  const Allocation& a = it->second;
  // A pointer one past the end is a valid argument only for an empty range.
  if (p < a.begin || p + bytes > a.begin + a.bytes || (bytes > 0 && p >= a.begin + a.bytes)) return std::nullopt;
  return a;
}

// Device memory stays open while any host thread executes device work; the registry lock is not held
// during that work, so the streams of several threads (NCCL ranks) run side by side.
DeviceAccess::DeviceAccess() {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  if (r.open++ == 0)
    for (const auto& [begin, a] : r.allocations)
      if (a.device >= 0) QTUNE_SIM_UNPOISON(reinterpret_cast<void*>(begin), a.bytes);
}

DeviceAccess::~DeviceAccess() {
  Registry& r = registry();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  if (--r.open == 0)
    for (const auto& [begin, a] : r.allocations)
      if (a.device >= 0) QTUNE_SIM_POISON(reinterpret_cast<void*>(begin), a.bytes);
}

}  // namespace qtune::sim
