#pragma once
// Named points where a test may kill the process, to prove that a write interrupted there loses nothing.
// With QTUNE_CRASH_AT=<name> in the environment the process sends itself SIGKILL on reaching <name> (no
// destructor, no atexit: what a power cut or `kill -9` leaves). Without it, a crash point costs one lookup.
#include <string_view>

namespace qtune::io {

void crash_point(std::string_view name);

}  // namespace qtune::io
