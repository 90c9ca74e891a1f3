#pragma once
#include <cstdint>
#include <string>

namespace qtune {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:0"
};

// Parses "cpu", "cuda" or "cuda:N"; throws naming the string otherwise.
Device parse_device(const std::string& text);

// True when this build has the CUDA backend and the driver reports at least one usable GPU.
bool cuda_available();
int cuda_device_count();

}  // namespace qtune
