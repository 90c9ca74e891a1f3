#include "engine/backend_registry.h"

#include <array>
#include <mutex>
#include <optional>

#include "engine/check.h"

namespace qtune {
namespace {

constexpr size_t kDeviceTypes = 2;  // DeviceType::cpu, DeviceType::cuda

struct Registry {
  std::mutex mutex;
  std::array<std::optional<BackendProvider>, kDeviceTypes> providers;
};

// Constructed on first use: backends register from static initializers, whose order across translation
// units is unspecified.
Registry& registry() {
  static Registry instance;
  return instance;
}

std::optional<BackendProvider> provider_of(DeviceType type) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.providers[static_cast<size_t>(type)];
}

}  // namespace

bool register_backend(DeviceType type, BackendProvider provider) {
  QTUNE_CHECK(provider.device_count != nullptr && provider.backend != nullptr,
              "register_backend: a provider needs both device_count and backend");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto& slot = r.providers[static_cast<size_t>(type)];
  QTUNE_CHECK(!slot.has_value(), "register_backend: two backends are linked for device type ", Device{type, 0}.str(),
              " (one registration per type)");
  slot = provider;
  return true;
}

int device_count(DeviceType type) {
  const std::optional<BackendProvider> p = provider_of(type);
  return p ? p->device_count() : 0;
}

Backend& backend_for(Device device) {
  const std::optional<BackendProvider> p = provider_of(device.type);
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
