#pragma once
// `qtune bench load`: load time and peak resident memory of loading a generated bf16 checkpoint of
// Llama-3.2-1B shapes (1.24 B parameters, random weights) as a bf16 model and straight into quantized ones
// (models/quantizing_loader.h), each load in a fresh process, against the issue 6 target
//   peak RSS <= final in-memory model + 2 x the largest tensor + 200 MB.
// With --nproc N, N MPI ranks (mpirun) load it straight into FSDP shards (models/sharded_loading.h), each reading
// only its pieces, and the target is per rank, with the rank's shard (and the root's whole tensors) as the model.
// With --device cuda the model (or each rank's shard, on the rank's own GPU, FSDP over NCCL) lands on a GPU: the
// target then bounds the GPU's peak (without the 200 MB of binary and libraries), and the host's peak RSS is
// reported beside it.
#include <string>
#include <vector>

namespace qtune::bench {

struct LoadBenchOptions {
  std::string dir;     // where the checkpoint is written once and reused; empty: a directory under the temp dir
  bool small = false;  // a tiny config instead of Llama-3.2-1B (tests)
  // bf16 = load_llama in bf16. Empty: bf16, nf4, 8da4w and int4wo; with nproc or on a GPU, bf16 and nf4.
  std::vector<std::string> targets;
  int nproc = 0;               // 0: one process loads the whole model; N: N ranks load their shards (bf16 and nf4)
  std::string device = "cpu";  // cpu, cuda or cuda:N; with nproc only cuda (each rank takes its node-local GPU)
  std::string measure;         // hidden, set in the child process: load `dir` as this one target and print its numbers
};

// Prints the table to stdout; returns 0 when every target meets the memory target, 1 otherwise (or on bad
// options, the message on stderr).
int run_load_bench(const LoadBenchOptions& options);

}  // namespace qtune::bench
