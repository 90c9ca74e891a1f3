# The CUDA backend is not wired yet: build the stub that reports "no CUDA backend".
target_sources(qtune PRIVATE cuda/no_cuda.cpp)
