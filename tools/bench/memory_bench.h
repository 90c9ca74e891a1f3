#pragma once
// `qtune bench memory`: peak memory and time of ONE training step (forward, backward, AdamW over the
// trainable parameters, optimizer state included) of the same Llama trained six ways: full, LoRA, QLoRA
// (NF4 decoder), QAT (8da4w), QAT+LoRA and LoRA over a float8 frozen base. Each variant runs in a fresh
// child process, so one variant's peak never includes another's.
#include <cstdint>
#include <string>
#include <vector>

namespace qtune::bench {

struct MemoryBenchOptions {
  bool small = false;  // a tiny model (seconds; for tests) instead of the weights-dominated default
  int steps = 3;       // timed steps after one warm-up; the step time is their median
  int64_t vocab = 0;   // 0: the model's own (32000, or 256 when small); smaller shrinks the full-precision
                       // embedding and head, which every variant keeps, against the decoder
  int64_t layers = 0;  // 0: the model's own (24); fewer lets the full-precision embedding and head dominate
  std::vector<std::string> dtypes = {"f32", "bf16"};
};

// Prints the table and the PASS/FAIL targets to stdout; returns 0, or 1 when the options are invalid or a
// variant failed (the message goes to stderr). The targets are reported, not enforced by the status.
int run_memory_bench(const MemoryBenchOptions& options);

}  // namespace qtune::bench
