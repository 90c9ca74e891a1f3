# CPU GEMM library. Eigen for now; see tools/bench/README.md for the measured choice.
