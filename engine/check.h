#pragma once
// Errors carry the file and line that raised them plus a hint for the user. Every bad input in
// qtune (shape mismatch, malformed file, unknown key) is reported through QTUNE_CHECK / QTUNE_FAIL.
#include <sstream>
#include <stdexcept>
#include <string>

namespace qtune {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
[[noreturn]] void fail(const char* file, int line, const char* condition, const std::string& message);
}  // namespace detail

}  // namespace qtune

// QTUNE_CHECK(cond, "message parts", value, ...): throws qtune::Error naming file:line.
#define QTUNE_CHECK(cond, ...)                                                                           \
  do {                                                                                                   \
    if (!(cond)) ::qtune::detail::fail(__FILE__, __LINE__, #cond, ::qtune::detail::concat(__VA_ARGS__)); \
  } while (0)

#define QTUNE_FAIL(...) ::qtune::detail::fail(__FILE__, __LINE__, nullptr, ::qtune::detail::concat(__VA_ARGS__))
