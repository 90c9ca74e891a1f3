#pragma once
// The main of a GPU test executable (include it once, after DOCTEST_CONFIG_IMPLEMENT): without a CUDA
// device it prints the reason and exits 77, which CTest reports as SKIPPED -- never a silent pass.
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/device.h"

int main(int argc, char** argv) {
  if (!qtune::cuda_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
