#include "models/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"

namespace qtune::models {
namespace {

namespace fs = std::filesystem;

// config.json's torch_dtype spelling of the dtypes a checkpoint may hold.
std::string torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f64:
      return "float64";
    case DType::f32:
      return "float32";
    case DType::bf16:
      return "bfloat16";
    case DType::f16:
      return "float16";
    default:
      QTUNE_FAIL("save_llama: cannot write weights of dtype ", dtype_name(dtype),
                 " (float32, bfloat16, float16 or float64)");
  }
}

// Every mismatch between the model and the files, one line each, so a bad checkpoint is diagnosed at once.
std::vector<std::string> check_tensors(const io::CheckpointFiles& files, const std::map<std::string, Shape>& expected,
                                       const LlamaConfig& config) {
  std::vector<std::string> problems;
  for (const auto& [name, shape] : expected) {
    if (!files.contains(name)) {
      problems.push_back("missing tensor " + name + " " + shape_str(shape));
      continue;
    }
    const io::TensorEntry& e = files.entry(name);
    const std::string file = files.file_of(name).path();
    if (e.shape != shape)
      problems.push_back("tensor " + name + " has shape " + shape_str(e.shape) + " in " + file +
                         ", the model expects " + shape_str(shape));
    const auto dtype = io::to_dtype(e.dtype);
    if (!dtype || !is_floating(*dtype))
      problems.push_back("tensor " + name + " in " + file + " has dtype " + std::string(io::st_dtype_name(e.dtype)) +
                         ", not a floating type");
  }
  for (const std::string& name : files.names()) {
    if (expected.count(name)) continue;
    const io::TensorEntry& e = files.entry(name);
    const std::string file = files.file_of(name).path();
    // transformers may store the tied head anyway; it is the embedding, so it is only shape-checked.
    if (config.tie_word_embeddings && name == "lm_head.weight") {
      const Shape want{config.vocab_size, config.hidden_size};
      if (e.shape != want)
        problems.push_back("tensor lm_head.weight has shape " + shape_str(e.shape) + " in " + file +
                           ", the model expects " + shape_str(want));
      continue;
    }
    problems.push_back("unexpected tensor " + name + " " + shape_str(e.shape) + " in " + file);
  }
  return problems;
}

void fill_weights(Llama& model, const io::CheckpointFiles& files) {
  const StateDict params = model.state_dict();
  std::map<std::string, Shape> expected;
  for (const auto& [name, param] : params) expected[name] = param.shape();
  check_llama_tensors(files, expected, model.config());
  for (const auto& [name, param] : params) copy_tensor(files, name, param);
}

}  // namespace

void check_llama_tensors(const io::CheckpointFiles& files, const std::map<std::string, Shape>& expected,
                         const LlamaConfig& config) {
  const std::vector<std::string> problems = check_tensors(files, expected, config);
  if (problems.empty()) return;
  std::ostringstream out;
  out << files.dir() << ": the weights do not match config.json:";
  for (const std::string& p : problems) out << "\n  " << p;
  QTUNE_FAIL(out.str());
}

void copy_tensor(const io::CheckpointFiles& files, const std::string& name, const Tensor& dst) {
  NoGradGuard no_grad;
  // copy_ converts the file dtype to the parameter's, rounding as a cast does (exact when widening). In chunks
  // whose mapped pages are dropped as they are consumed: a large tensor (an embedding) is never resident twice.
  const Tensor src = files.tensor(name);
  constexpr int64_t kChunkBytes = int64_t{32} << 20;
  const auto element = static_cast<int64_t>(dtype_size(src.dtype()));
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / element), n = src.numel();
  if (!dst.is_contiguous() || dst.numel() != n || n <= chunk) {
    dst.copy_(src);
  } else {
    const Tensor from = src.view({n}), to = dst.view({n});
    const io::TensorEntry& entry = files.entry(name);
    const io::SafetensorsFile& file = files.file_of(name);
    for (int64_t first = 0; first < n; first += chunk) {
      const int64_t count = std::min(chunk, n - first);
      to.narrow(0, first, count).copy_(from.narrow(0, first, count));
      file.release(entry, static_cast<uint64_t>(first * element), static_cast<uint64_t>((first + count) * element));
    }
  }
  files.release(name);
}

LlamaOptions llama_options(const LoadOptions& options) {
  LlamaOptions model_options;
  model_options.dtype = options.dtype.value_or(DType::f32);
  model_options.device = options.device;
  model_options.activation_checkpointing = options.activation_checkpointing;
  return model_options;
}

std::shared_ptr<Llama> load_llama(const std::string& dir, const LoadOptions& options) {
  const LlamaConfig config = load_llama_config(dir);
  const LlamaOptions model_options = llama_options(options);
  if (model_options.device.is_cpu()) {  // a GPU's memory is its backend's to refuse
    check_fits_memory(
        config, double(dtype_size(model_options.dtype)),
        (std::filesystem::path(dir) / "config.json").string() + " in " + std::string(dtype_name(model_options.dtype)));
  }
  const io::CheckpointFiles files = io::CheckpointFiles::open(dir);
  std::shared_ptr<Llama> model;
  {
    SkipInitGuard no_random_init;  // every parameter is read from the files below
    model = std::make_shared<Llama>(config, model_options);
  }
  fill_weights(*model, files);
  return model;
}

void load_llama_weights(Llama& model, const std::string& dir) { fill_weights(model, io::CheckpointFiles::open(dir)); }

void save_llama(Llama& model, const std::string& dir, const SaveOptions& options) {
  const DType dtype = options.dtype.value_or(model.options().dtype);
  LlamaConfig config = model.config();
  config.torch_dtype = torch_dtype_name(dtype);

  // named_parameters() walks modules as transformers registers them and lists a tied tensor once,
  // under the embedding's name: the order and the omitted lm_head that save_pretrained produces.
  std::vector<io::LazyTensor> tensors;
  for (auto& [name, p] : model.named_parameters()) {
    tensors.push_back({{name, dtype, p.shape()}, [p, dtype, &options] {
                         NoGradGuard no_grad;
                         return read_tensor(options.read, p).detach().to(dtype);
                       }});
  }
  io::SaveCheckpointOptions files;
  files.max_shard_bytes = options.max_shard_bytes;
  io::save_checkpoint_files(dir, tensors, files);
  // The config last: a directory with a config.json is a complete checkpoint.
  io::write_file_atomic((fs::path(dir) / "config.json").string(), llama_config_to_json(config));
}

}  // namespace qtune::models
