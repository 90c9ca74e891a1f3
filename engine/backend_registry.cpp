#include "engine/backend_registry.h"

#include <array>
#include <atomic>
#include <mutex>

#include "engine/check.h"

namespace qtune {
namespace {

constexpr size_t kDeviceTypes = 2;  // DeviceType::cpu, DeviceType::cuda

// Written once per type while static initializers run, read on every op: the flag, set with release
// after the provider is in place, lets lookups go without a lock.
struct Registry {
  std::mutex mutex;  // serializes registrations
  std::array<BackendProvider, kDeviceTypes> providers{};
  std::array<std::atomic<bool>, kDeviceTypes> present{};
};

// Constructed on first use: backends register from static initializers, whose order across translation
// units is unspecified.
Registry& registry() {
  static Registry instance;
  return instance;
}

const BackendProvider* provider_of(DeviceType type) {
  Registry& r = registry();
  const auto t = static_cast<size_t>(type);
  return r.present[t].load(std::memory_order_acquire) ? &r.providers[t] : nullptr;
}

}  // namespace

bool register_backend(DeviceType type, BackendProvider provider) {
  QTUNE_CHECK(provider.device_count != nullptr && provider.backend != nullptr,
              "register_backend: a provider needs both device_count and backend");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto t = static_cast<size_t>(type);
  QTUNE_CHECK(!r.present[t].load(std::memory_order_relaxed),
              "register_backend: two backends are linked for device type ", Device{type, 0}.str(),
              " (one registration per type)");
  r.providers[t] = provider;
  r.present[t].store(true, std::memory_order_release);
  return true;
}

int device_count(DeviceType type) {
  const BackendProvider* p = provider_of(type);
  return p ? p->device_count() : 0;
}

Backend& backend_for(Device device) {
  const BackendProvider* p = provider_of(device.type);
  if (!p) {
    QTUNE_CHECK(!device.is_cpu(),
                "no CPU backend is linked into this program: link the qtune::qtune CMake target, which keeps "
                "cpu/ linked (or pass -Wl,--undefined=qtune_cpu_backend_anchor when linking libqtune by hand)");
    QTUNE_FAIL("device ", device.str(),
               " was asked for, but this qtune build has no CUDA backend (configure with -DQTUNE_CUDA=ON)");
  }
  return p->backend(device.index);
}

}  // namespace qtune
