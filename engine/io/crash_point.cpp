#include "engine/io/crash_point.h"

#include <csignal>
#include <cstdlib>
#include <string>

namespace qtune::io {

void crash_point(std::string_view name) {
  static const std::string armed = [] {
    const char* value = std::getenv("QTUNE_CRASH_AT");
    return std::string(value != nullptr ? value : "");
  }();
  if (!armed.empty() && armed == name) std::raise(SIGKILL);
}

}  // namespace qtune::io
