#pragma once
// Llama models from and to Hugging Face model directories (config.json + safetensors, sharded or not).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/io/checkpoint_files.h"
#include "models/llama.h"
#include "models/tensor_reader.h"

namespace qtune::models {

struct LoadOptions {
  std::optional<DType> dtype{};  // compute dtype; default: f32 (checkpoints in bf16/f16 are converted)
  Device device = Device::cpu();
  bool activation_checkpointing = false;  // LlamaOptions::activation_checkpointing, for training
};

// Reads config.json, builds the model and fills every parameter from the safetensors files, converting
// the file dtype (bf16/f16/f32) to the compute dtype. A missing, unexpected or mis-shaped tensor fails
// naming it (and the file). Tied checkpoints may or may not hold lm_head.weight.
std::shared_ptr<Llama> load_llama(const std::string& dir, const LoadOptions& options = {});

// Fills every parameter of an existing `model` from the safetensors files in `dir`, with load_llama's
// checks and dtype conversion: for a model built with other LlamaOptions (a seed for later randomness)
// or a training checkpoint being restored into a live model.
void load_llama_weights(Llama& model, const std::string& dir);

// The loaders' shared steps (load_llama, load_llama_quantized):
LlamaOptions llama_options(const LoadOptions& options);  // the model the options describe
// Fails listing every missing, unexpected, mis-shaped or non-floating tensor of `files` against `expected`
// (HF name -> shape), before any tensor data is read. A tied checkpoint's stored lm_head is shape-checked.
void check_llama_tensors(const io::CheckpointFiles& files, const std::map<std::string, Shape>& expected,
                         const LlamaConfig& config);
// dst.copy_(the tensor `name`), converting its dtype, then drops the tensor's mapped pages so that loading a
// model never keeps the whole file resident beside it.
void copy_tensor(const io::CheckpointFiles& files, const std::string& name, const Tensor& dst);

struct SaveOptions {
  std::optional<DType> dtype{};  // file dtype; default: the model's dtype
  uint64_t max_shard_bytes = 0;  // 0: one model.safetensors
  TensorReader read{};           // each parameter's value, read as the file writer reaches it
};

// Writes config.json (torch_dtype = the file dtype) and the weights; lm_head.weight is omitted when tied,
// as transformers does. load -> save -> load reproduces every tensor bit for bit. One converted tensor at a
// time is held beside the model.
void save_llama(Llama& model, const std::string& dir, const SaveOptions& options = {});

}  // namespace qtune::models
