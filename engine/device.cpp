#include "engine/device.h"

#include "engine/backend_registry.h"
#include "engine/check.h"

namespace qtune {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    // At most 9 digits, so std::stoi cannot throw std::out_of_range past our error type.
    QTUNE_CHECK(!digits.empty() && digits.size() <= 9 && digits.find_first_not_of("0123456789") == std::string::npos,
                "bad device '", text, "': expected cpu, cuda or cuda:N");
    return Device::cuda(std::stoi(digits));
  }
  QTUNE_FAIL("bad device '", text, "': expected cpu, cuda or cuda:N");
}

int cuda_device_count() { return device_count(DeviceType::cuda); }

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace qtune
