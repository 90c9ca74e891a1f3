#pragma once
// How much memory this machine can give one process: physical RAM plus swap, capped by the cgroup limit of a
// container when one is set. Used to refuse, before allocating, work that cannot fit at all.
#include <cstdint>

namespace qtune {

uint64_t host_memory_bytes();

}  // namespace qtune
