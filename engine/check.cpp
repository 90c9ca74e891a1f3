#include "engine/check.h"

namespace qtune::detail {

void fail(const char* file, int line, const char* condition, const std::string& message) {
  std::string text = message;
  if (condition != nullptr) text += concat(" [check failed: ", condition, "]");
  text += concat(" (", file, ":", line, ")");
  throw Error(text);
}

}  // namespace qtune::detail
