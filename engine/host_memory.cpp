#include "engine/host_memory.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace qtune {
namespace {

// "<Key>: N kB" from /proc/meminfo; 0 when absent.
uint64_t meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  uint64_t kib = 0;
  std::string unit;
  while (in >> name >> kib >> unit) {
    if (name == key + ":") return kib * 1024;
  }
  return 0;
}

// cgroup v2's memory.max of this process's group: a number of bytes, or "max" (no limit).
uint64_t cgroup_limit_bytes() {
  std::ifstream in("/sys/fs/cgroup/memory.max");
  std::string text;
  if (!(in >> text) || text == "max") return UINT64_MAX;
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return UINT64_MAX;
  }
}

}  // namespace

uint64_t host_memory_bytes() {
  uint64_t total = meminfo_bytes("MemTotal");
  if (total == 0) {  // no /proc: what sysconf knows
    total = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  total += meminfo_bytes("SwapTotal");
  return std::min(total, cgroup_limit_bytes());
}

}  // namespace qtune
