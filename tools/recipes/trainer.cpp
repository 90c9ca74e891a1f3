#include "tools/recipes/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "data/tokenizer.h"
#include "dist/nccl_communicator.h"
#include "dist/world.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/directory_lock.h"
#include "engine/io/file_fingerprint.h"
#include "engine/io/staged_directory.h"
#include "engine/module.h"
#include "engine/numerics/clip.h"
#include "engine/rng.h"
#include "models/hf_checkpoint.h"
#include "models/sharded_llama.h"
#include "models/sharded_loading.h"
#include "ops/elementwise.h"
#include "optim/clip_grad.h"
#include "optim/lr_schedule.h"
#include "tools/recipes/checkpoint.h"
#include "tools/recipes/metrics.h"
#include "tools/recipes/progress.h"
#include "tools/recipes/resume_check.h"
#include "tools/recipes/setup.h"
#include "tools/recipes/sharded_checkpoint.h"

namespace qtune::recipes {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

// A step takes train.grad_accum batches on each of `ranks` ranks.
int64_t total_steps(const RunConfig& config, const data::DataLoader& loader, int ranks) {
  if (config.train.steps > 0) return config.train.steps;
  const double micro_batches = config.train.epochs * static_cast<double>(loader.batches_per_epoch());
  const double per_step = double(config.train.grad_accum) * double(ranks);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(micro_batches / per_step)));
}

// Mean token loss over the eval batches (train.eval_batches, or the whole set), always the same batches.
double evaluate(models::Llama& model, data::DataLoader& loader, int64_t max_batches, Device device) {
  NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  loader.set_position({});
  const int64_t n = max_batches > 0 ? std::min(max_batches, loader.batches_per_epoch()) : loader.batches_per_epoch();
  double loss_sum = 0;
  int64_t targets = 0;
  for (int64_t i = 0; i < n; ++i) {
    const data::Batch batch = loader.next();
    if (batch.num_targets == 0) continue;
    // Model::loss is the mean over this batch's targets; weighting by their count gives the mean per token.
    loss_sum += model.loss(batch.tokens.to(device), batch.targets.to(device)).item() * double(batch.num_targets);
    targets += batch.num_targets;
  }
  QTUNE_CHECK(targets > 0, "data.eval has no tokens to score");
  return loss_sum / double(targets);
}

optim::LrSchedule make_schedule(const RunConfig& config, int64_t total) {
  optim::ScheduleOptions options;
  options.name = config.schedule.name;
  options.warmup_steps = config.schedule.warmup_steps;
  options.total_steps = total;
  options.min_lr = config.schedule.min_lr;
  return optim::LrSchedule(config.optim.lr, options);
}

// The values of `parts` (any floating dtype and shape, on `device`), in order, read back to the host in one
// transfer: every number of a logging interval costs the GPU a single wait.
std::vector<double> read_back(const std::vector<Tensor>& parts, Device device) {
  int64_t total = 0;
  for (const Tensor& t : parts) total += t.numel();
  const Tensor gathered = Tensor::empty({total}, DType::f64, device);
  int64_t at = 0;
  for (const Tensor& t : parts) {
    gathered.narrow(0, at, t.numel()).copy_(t.reshape({t.numel()}));
    at += t.numel();
  }
  return gathered.to_vector<double>();
}

// A step taken whose numbers are still where they were computed: the loop reads them only when it logs,
// evaluates or saves, so the steps in between queue their work on a GPU without waiting for it.
struct PendingStep {
  int64_t step = 0;
  double lr = 0;
  std::vector<Tensor> losses;  // one 0-d loss per micro-batch, detached
  optim::GradNorm grad_norm;
  int64_t tokens = 0;  // positions fed to the model
  uint64_t peak_mem_bytes = 0;
};

// The ranks of a sharded run (one process alone: rank 0 of 1, no sharding).
struct Ranks {
  dist::Communicator* comm = nullptr;    // host buffers: barriers, losses, the pieces' loading (MPI)
  dist::Communicator* shards = nullptr;  // what FSDP gathers and reduces over: comm, or NCCL between GPU ranks
  std::string given_device;              // a GPU rank's `device` as given, which files record ("" as trained)
  models::ShardedLlama* sharded = nullptr;
  int rank = 0, size = 1;
  bool lead() const { return rank == 0; }
};

// Every micro-batch of a step starts this far into the random stream (lora.dropout's masks), whichever rank
// computes it: N ranks draw what one process accumulating their micro-batches draws. Far more than a
// micro-batch consumes, and 2^28 micro-batches before the 64-bit offset wraps.
constexpr uint64_t kRandomPerMicroBatch = uint64_t{1} << 36;

// Backward over the step's micro-batches, each loss scaled by 1/count, so the gradients are those of their mean.
// A step reads grad_accum micro-batches per rank; rank r computes the r-th grad_accum of them, and the sharded
// model reduces the gradients in rank order. The targets stay on the host (the loss counts them there); the
// tokens go up as an asynchronous copy.
void accumulate_gradients(models::Llama& model, data::DataLoader& loader, int64_t accum, Device device,
                          const Ranks& ranks, PendingStep& s) {
  const int64_t count = accum * ranks.size;
  Generator& random = default_generator();
  const uint64_t seed = random.seed();
  const uint64_t first = (random.offset() + kRandomPerMicroBatch - 1) / kRandomPerMicroBatch * kRandomPerMicroBatch;
  std::vector<double> mine;
  for (int64_t micro = 0; micro < count; ++micro) {
    const data::Batch batch = loader.next();
    s.tokens += batch.tokens.numel();
    if (micro / accum != ranks.rank) continue;
    random.set_state(seed, first + static_cast<uint64_t>(micro) * kRandomPerMicroBatch);
    const Tensor loss = model.loss(batch.tokens.to(device), batch.targets);
    if (ranks.comm) {
      mine.push_back(loss.item());
    } else {
      s.losses.push_back(loss.detach());
    }
    (count == 1 ? loss : loss * (1.0 / double(count))).backward();
  }
  random.set_state(seed, first + static_cast<uint64_t>(count) * kRandomPerMicroBatch);
  if (!ranks.comm) return;
  // Every rank logs every micro-batch's loss, in order.
  std::vector<double> all(static_cast<size_t>(count));
  ranks.comm->all_gather(dist::Buffer{mine.data(), accum, DType::f64}, dist::Buffer{all.data(), count, DType::f64})
      ->wait();
  for (double v : all) s.losses.push_back(Tensor::scalar(v, DType::f64));
}

// The step's global gradient norm (returned still on the device) and clipping to max_norm.
optim::GradNorm clip_gradients(const std::vector<Tensor>& params, double max_norm, const Ranks& ranks) {
  if (!ranks.sharded) return optim::clip_grad_norm_queued(params, max_norm);
  return optim::GradNorm({ranks.sharded->finish_gradients(max_norm)});
}

// Throws when output_dir holds something a restart from step 0 would overwrite: a final/ model, or step_<N>
// checkpoint directories that are incomplete, damaged or of another trainer-state version.
void check_nothing_to_lose(const fs::path& out) {
  std::string found = fs::exists(out / "final") ? "final/" : "";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out / "checkpoints", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step_", 0) == 0) found += (found.empty() ? "" : ", ") + ("checkpoints/" + name);
  }
  QTUNE_CHECK(found.empty(), "train.resume: ", out.string(), " has no complete checkpoint to resume from but holds ",
              found,
              " (unreadable: see `qtune info` on each); a restart from step 0 would overwrite it, so move them "
              "away first or choose another output_dir");
}

// data.train and data.eval as they are now, to compare at resume.
std::map<std::string, std::string> data_fingerprints(const RunConfig& config) {
  std::map<std::string, std::string> out{{"data.train", io::file_fingerprint(config.data.train)}};
  if (!config.data.eval.empty()) out["data.eval"] = io::file_fingerprint(config.data.eval);
  return out;
}

// A resumed run must read the data its checkpoint's data position counts in (states saved before fingerprints
// were recorded carry none and are not checked).
void check_same_data(const RunConfig& config, const TrainerState& state, const std::string& checkpoint) {
  const std::map<std::string, std::string> now = data_fingerprints(config);
  for (const auto& [key, saved] : state.data_fingerprints) {
    const auto it = now.find(key);
    if (it == now.end() || it->second == saved) continue;
    QTUNE_FAIL("cannot resume from ", checkpoint, ": ", key, " (",
               key == "data.train" ? config.data.train : config.data.eval, ") changed since the checkpoint was saved (",
               saved, " then, ", it->second,
               " now); resume with the data it was trained on, or start a new output_dir");
  }
}

// The state a run carries between steps and into its checkpoints.
struct Progress {
  int64_t step = 0;
  double loss = 0;
  int64_t eval_step = 0;
  double eval_loss = std::numeric_limits<double>::quiet_NaN();
  double elapsed_before = 0;  // training seconds of earlier processes (resumed runs)
};

}  // namespace

// The run on this process, one of `ranks`.
static TrainResult train_as(const RunConfig& config, const TrainHooks& given_hooks, Ranks ranks) {
  TrainHooks hooks = given_hooks;
  if (!ranks.lead()) hooks.on_note = nullptr, hooks.on_step = nullptr, hooks.on_eval = nullptr;
  const auto note = [&](const std::string& text) {
    if (hooks.on_note) hooks.on_note(text);
  };
  const Device device = parse_device(config.device);
  // The config as given: a GPU rank trains on its own device, and its files record `device` as written.
  const std::string config_json = [&] {
    RunConfig given = config;
    if (!ranks.given_device.empty()) given.device = ranks.given_device;
    return run_config_to_json(given);
  }();
  QTUNE_CHECK(!config.dist.offload || ranks.comm,
              "dist.offload moves FSDP's shards and optimizer state to host memory: start the run as ranks (mpirun, "
              "srun or --nproc; --nproc 1 offloads one GPU's optimizer state)");
  QTUNE_CHECK(config.dist.reduce_dtype.empty() || ranks.comm,
              "dist.reduce_dtype sets what FSDP ranks sum their gradients in: start the run as ranks (mpirun, srun or "
              "--nproc), or drop it");
  QTUNE_CHECK(device.is_cpu() || device.index < cuda_device_count(), "device ", config.device,
              ": no such CUDA device here (", cuda_device_count(), " found); use device=cpu");
  // model.tf32 holds for this run only: the device's backend outlives it.
  struct Tf32Scope {
    Backend& backend;
    bool before;
    ~Tf32Scope() { backend.set_tf32(before); }
  };
  const Tf32Scope tf32_scope{backend_for(device), backend_for(device).tf32()};
  tf32_scope.backend.set_tf32(config.model.tf32);
  const fs::path out(config.output_dir);
  const std::string metrics_path = (out / "metrics.jsonl").string();
  // One live process per run directory: a second `qtune run` on it (resume included) is refused, and the
  // leftovers recovered below can only be those of dead processes.
  std::optional<io::DirectoryLock> lock;
  if (ranks.lead()) {
    lock.emplace(io::DirectoryLock::acquire(out.string(), "output_dir"));
    for (const fs::path& dir : {out, out / "checkpoints"}) {
      for (const std::string& text : io::recover_staged_directories_in(dir)) note(text);
    }
  }
  // The other ranks look at output_dir once rank 0 has recovered it, and before it writes there. Waiting for
  // rank 0's file work (recovery, checkpoints, final/) may take far longer than a collective: a rank that
  // dies meanwhile still ends the job through the launcher, and a stuck one after this long. Rank 0 arrives
  // last at these barriers, so it waits the collective deadline: a rank that stopped answering ends the job in
  // dist.timeout_s, whatever step it stopped at.
  const auto barrier = [&] {
    if (!ranks.comm) return;
    const auto work = ranks.comm->barrier();
    ranks.lead() ? work->wait() : work->wait(std::chrono::hours(2));
  };
  // Every rank writes a file before this one: rank 0 may wait for the others' writing too.
  const auto barrier_after_writes = [&] {
    if (ranks.comm) ranks.comm->barrier()->wait(std::chrono::hours(2));
  };
  barrier();

  std::optional<std::string> checkpoint;
  TrainerState resumed;
  if (config.train.resume) {
    checkpoint = latest_checkpoint(out.string());
    if (checkpoint) {
      resumed = read_trainer_state(*checkpoint);
      check_resume_compatible(config, ranks.size, resumed.config_json, resumed.ranks, *checkpoint);
      check_same_data(config, resumed, *checkpoint);
    } else {
      // Starting over is right only for a run that stopped before its first save; a run whose checkpoints
      // are all unreadable (or that finished and lost them) is not overwritten.
      check_nothing_to_lose(out);
      note("train.resume: no complete checkpoint in " + (out / "checkpoints").string() +
           " (the run stopped before its first save): starting from step 0");
    }
  } else {
    QTUNE_CHECK(!fs::exists(metrics_path) && !fs::exists(out / "checkpoints"), "output_dir ", out.string(),
                " already holds a run (metrics.jsonl, checkpoints/): continue it with train.resume=true, or choose "
                "another output_dir");
  }
  barrier();
  reset_peak_memory(device);

  const std::string tokenizer_path = tokenizer_source(config);
  const auto tokenizer = data::load_tokenizer(tokenizer_path);
  QTUNE_CHECK(!hooks.save_weights == !hooks.load_weights, "TrainHooks: save_weights and load_weights come together");
  const bool whole_model_files = !hooks.load_weights;
  const bool sharded_state = checkpoint && has_sharded_state(*checkpoint);
  // Under FSDP the ranks read only their pieces of the decoder projections (a sharded load), from model.path or
  // the whole-model checkpoint resumed. A per-rank checkpoint's trainable tensors come in after the cut, below.
  std::optional<std::string> load_dir;
  std::shared_ptr<models::Llama> model;
  if (ranks.comm && !config.model.config) {
    load_dir = checkpoint && whole_model_files && !sharded_state ? *checkpoint : config.model.path;
    model = reserved_model(config, *load_dir);
    if (!model) load_dir.reset();
  }
  if (!model) model = checkpoint && whole_model_files ? model_skeleton(*checkpoint, config) : initial_model(config);
  const int64_t vocab_size = model->config().vocab_size;
  QTUNE_CHECK(tokenizer->vocab_size() <= vocab_size, "the tokenizer ", tokenizer_path, " has ", tokenizer->vocab_size(),
              " tokens but the model only ", vocab_size, " embeddings: do they belong together?");
  const int64_t context = model->config().max_position_embeddings;
  QTUNE_CHECK(config.data.seq_len <= context, "data.seq_len ", config.data.seq_len, " exceeds the model's context (",
              config.model.config ? "model.config" : config.model.path + "/config.json",
              " max_position_embeddings = ", context, "): lower data.seq_len");
  if (hooks.prepare_model) hooks.prepare_model(*model);
  if (sharded_state && whole_model_files)
    for (const auto& [name, t] : model->named_parameters())
      QTUNE_CHECK(t.requires_grad(), *checkpoint, " holds the trainable tensors only, but ", name,
                  " is frozen in this run: resume it with the recipe that wrote it");
  if (checkpoint && !sharded_state) {
    if (!whole_model_files) {
      hooks.load_weights(*model, *checkpoint);
    } else if (!load_dir) {  // a sharded load reads the checkpoint itself
      models::load_llama_weights(*model, *checkpoint);
    }
  }

  data::DataLoader loader = make_loader(config, config.data.train, *tokenizer, vocab_size, note);
  std::optional<data::DataLoader> eval_loader;
  if (!config.data.eval.empty()) {
    eval_loader = make_loader(config, config.data.eval, *tokenizer, vocab_size, note);
  }
  // The data as this run read it, recorded in every checkpoint (computed once: a file moved during the run does
  // not fail a save).
  const std::map<std::string, std::string> fingerprints = data_fingerprints(config);
  const int64_t total = total_steps(config, loader, ranks.size);
  const optim::LrSchedule schedule = make_schedule(config, total);

  QTUNE_CHECK(!model->trainable_parameters().empty(), "the model has no trainable parameters");
  // Each rank keeps its shard of every layer from here on.
  std::unique_ptr<models::ShardedLlama> sharded;
  if (ranks.comm) {
    uint64_t whole = 0;
    for (const auto& [name, t] : model->named_parameters()) whole += t.nbytes();
    for (const auto& [name, t] : model->named_buffers()) whole += t.nbytes();
    sharded = std::make_unique<models::ShardedLlama>(
        *model, *ranks.shards,
        dist::FsdpOptions{
            .source = load_dir ? models::checkpoint_pieces(*load_dir, *ranks.comm, model->options().dtype) : nullptr,
            .offload = config.dist.offload,
            .reduce_dtype = config.dist.reduce_dtype.empty()
                                ? std::nullopt
                                : std::optional<DType>(dtype_from_name(config.dist.reduce_dtype))});
    ranks.sharded = sharded.get();
    const uint64_t load_peak = memory_stats(device).peak_allocated;  // a sharded load reads the pieces above
    note("FSDP: " + std::to_string(ranks.size) + (device.is_cuda() ? " GPU ranks over NCCL" : " ranks") +
         ", each holding 1/" + std::to_string(ranks.size) +
         " of every decoder layer and of the optimizer state: rank " + std::to_string(ranks.rank) + " keeps " +
         format_bytes(static_cast<uint64_t>(sharded->fsdp().held_bytes())) + " of the model's " + format_bytes(whole) +
         " (loading peaked at " + format_bytes(load_peak) +
         (load_dir ? ", reading only its pieces of the decoder layers" : ", loading the whole model first") +
         "; the step's peaks below are training's)" +
         (config.dist.offload ? "; shards, gradients and optimizer state offloaded to host memory" : ""));
    reset_peak_memory(device);
  }
  const std::vector<Tensor> params = sharded ? sharded->fsdp().parameters() : model->trainable_parameters();
  const auto optimizer = make_optimizer(config.optim, params);
  // Under FSDP each rank keeps the f32 masters of its own pieces: "state.<i>.master" is optimizer state, cut,
  // gathered and checkpointed like the moments, and every rank updates them as one process would.
  if (keeps_f32_masters(config)) optimizer->keep_f32_masters();

  Progress p;
  if (checkpoint) {
    QTUNE_CHECK(resumed.step <= total, "cannot resume from ", *checkpoint, ": it is at step ", resumed.step,
                ", past this run's ", total, " steps (raise train.steps)");
    if (sharded_state) {
      std::vector<std::string> names;
      std::vector<Shape> shapes;
      if (sharded) {
        names = sharded->fsdp().parameter_names();
        for (size_t j = 0; j < params.size(); ++j) shapes.push_back(sharded->fsdp().parameter_shape(j));
      } else {
        for (const auto& [name, t] : model->named_parameters())
          if (t.requires_grad()) names.push_back(name), shapes.push_back(t.shape());
      }
      optimizer->load_state(
          read_sharded_state(*checkpoint, names, shapes, params, ranks.rank, resumed.optimizer_scalars));
      if (sharded) sharded->fsdp().after_step();  // the root's whole tensors, from the pieces just read
    } else {
      const optim::OptimizerState saved = read_optimizer_state(*checkpoint, resumed);
      optimizer->load_state(sharded ? sharded->shard_state(saved) : saved);
    }
    loader.set_position(resumed.data);
    default_generator().set_state(resumed.rng_seed, resumed.rng_offset);
    p = {resumed.step, resumed.loss, resumed.eval_step, resumed.eval_loss, resumed.elapsed_s};
    note("resumed from " + *checkpoint + " at step " + std::to_string(p.step) + " of " + std::to_string(total));
  } else {
    manual_seed(config.train.seed);
  }
  // Nothing is written before every piece was built: a config error leaves no half-started run behind.
  std::optional<MetricsLog> metrics;
  if (ranks.lead()) {
    fs::create_directories(out);
    io::write_file_atomic((out / "config.json").string(), config_json + "\n");
    metrics.emplace(checkpoint ? MetricsLog::resume(metrics_path, p.step) : MetricsLog::create(metrics_path));
  }
  note("data: " + std::to_string(loader.sequences_per_epoch()) + " sequences of " +
       std::to_string(config.data.seq_len) + " tokens (" + std::to_string(loader.batches_per_epoch()) + " batches of " +
       std::to_string(config.data.batch_size) + " per epoch); " + std::to_string(total) + " steps, grad_accum " +
       std::to_string(config.train.grad_accum) +
       (ranks.size > 1 ? " per rank (" + std::to_string(config.train.grad_accum * ranks.size) + " batches a step)"
                       : ""));
  if (device.is_cpu() && config.model.dtype != "f32") {
    Backend& cpu = backend_for(device);
    const DType dtype = dtype_from_name(config.model.dtype);
    note(config.model.dtype + " GEMMs: " + cpu.gemm_path(dtype) +
         (cpu.gemm_native(dtype)
              ? ""
              : "; on this CPU " + config.model.dtype + " trains slower than f32 (model.dtype=f32)"));
  }

  const auto run_eval = [&](int64_t step) {
    p.eval_loss = evaluate(*model, *eval_loader, config.train.eval_batches, device);
    p.eval_step = step;
    if (metrics) metrics->log_eval(step, p.eval_loss);
    if (hooks.on_eval) hooks.on_eval(step, p.eval_loss);
  };
  int64_t saved_step = checkpoint ? p.step : 0;
  const auto t_start = clock::now();
  const auto save = [&](int64_t step) {
    const auto t_save = clock::now();
    const auto took = [&] {
      char text[32];
      std::snprintf(text, sizeof text, " in %.1f s", seconds_since(t_save));
      return std::string(text);
    };
    TrainerState state;
    state.step = step;
    state.total_steps = total;
    state.data = loader.position();
    state.rng_seed = default_generator().seed();
    state.rng_offset = default_generator().offset();
    state.elapsed_s = p.elapsed_before + seconds_since(t_start);
    state.loss = p.loss;
    state.eval_step = p.eval_step;
    state.eval_loss = p.eval_loss;
    state.config_json = config_json;
    state.ranks = ranks.size;
    state.data_fingerprints = fingerprints;
    saved_step = step;
    if (!sharded) {
      const std::string dir =
          save_checkpoint(out.string(), *model, tokenizer_path, optimizer->state(), state, hooks.save_weights);
      prune_checkpoints(out.string(), config.train.keep_checkpoints);
      note("saved " + dir + took());
      return;
    }
    if (config.dist.sharded_checkpoints) {
      // Every rank writes its pieces at once into a staging directory that rank 0 then completes and renames.
      const fs::path staging = out / "checkpoints" / (".step_" + std::to_string(step) + ".shards");
      if (ranks.lead()) {
        fs::remove_all(staging);  // a killed run's
        fs::create_directories(staging);
      }
      barrier();
      write_rank_shard(staging.string(), *sharded, optimizer->state(), ranks.rank);
      barrier_after_writes();
      if (ranks.lead()) {
        write_shard_index(staging.string(), *sharded, optimizer->state(), ranks.size);
        const std::string dir = save_sharded_checkpoint(out.string(), *model, tokenizer_path, staging.string(),
                                                        optimizer->state().scalars, state);
        prune_checkpoints(out.string(), config.train.keep_checkpoints);
        note("saved " + dir + " (sharded: a file per rank)" + took());
      }
      barrier();
      return;
    }
    // The checkpoint a single process writes (resumable at any world size), rank 0 writing each tensor as the
    // ranks gather it: no rank holds the whole model.
    sharded->consolidate(optimizer->state(), [&](const models::ShardedLlama::WholeReader& read) {
      const std::string dir =
          save_checkpoint(out.string(), *model, tokenizer_path, optimizer->state(), state, hooks.save_weights, &read);
      prune_checkpoints(out.string(), config.train.keep_checkpoints);
      note("saved " + dir + " (consolidated by rank 0)" + took());
    });
    barrier();  // a save that fails on rank 0 ends the job (train()'s catch)
  };

  const int64_t start_step = p.step;
  std::vector<PendingStep> pending;
  auto t_interval = clock::now();
  double interval_start_s = p.elapsed_before;  // the run's elapsed time when the interval began
  // Reads the pending steps' losses and gradient norms (on a GPU the one wait of the interval), checks them,
  // then logs each step; tokens/s is the interval's, timed once everything in it has run.
  const auto read_pending = [&] {
    if (pending.empty()) return;
    std::vector<Tensor> parts;
    for (const PendingStep& s : pending) {
      parts.insert(parts.end(), s.losses.begin(), s.losses.end());
      parts.insert(parts.end(), s.grad_norm.squares().begin(), s.grad_norm.squares().end());
    }
    const std::vector<double> read = read_back(parts, device);
    std::vector<std::pair<double, double>> values;  // loss, gradient norm
    int64_t tokens = 0;
    size_t at = 0;
    for (const PendingStep& s : pending) {
      // The mean of the micro-batch losses, summed in order; the norm of every gradient's squared norm.
      double loss = 0;
      for (size_t i = 0; i < s.losses.size(); ++i) loss += read[at++];
      int64_t squares = 0;
      for (const Tensor& t : s.grad_norm.squares()) squares += t.numel();
      values.emplace_back(loss / double(s.losses.size()), numerics::norm_from_squares(read.data() + at, squares));
      at += static_cast<size_t>(squares);
      tokens += s.tokens;
      QTUNE_CHECK(std::isfinite(values.back().first) && std::isfinite(values.back().second), "step ", s.step,
                  ": the loss (", values.back().first, ") or the gradient norm (", values.back().second,
                  ") is not finite; lower optim.lr, add schedule.warmup_steps, or keep optim.grad_clip on");
    }
    const double interval_s = seconds_since(t_interval);
    const double tokens_per_s = double(tokens) / std::max(interval_s, 1e-9);
    for (size_t i = 0; i < pending.size(); ++i) {
      const PendingStep& s = pending[i];
      StepMetrics m;
      m.step = s.step;
      m.total_steps = total;
      m.loss = values[i].first;
      m.lr = s.lr;
      m.grad_norm = values[i].second;
      m.tokens_per_s = tokens_per_s;
      // Steps between reads are not timed one by one (a GPU runs them after the host queued them): each gets
      // its share of the interval.
      m.elapsed_s = interval_start_s + interval_s * double(i + 1) / double(pending.size());
      m.peak_mem_bytes = s.peak_mem_bytes;
      p.loss = m.loss;
      if (metrics && (s.step % config.train.log_every == 0 || s.step == total)) metrics->log_step(m);
      if (hooks.on_step) hooks.on_step(m);
    }
    pending.clear();
    t_interval = clock::now();
    interval_start_s = p.elapsed_before + seconds_since(t_start);
  };
  model->train();
  for (int64_t step = p.step + 1; step <= total; ++step) {
    PendingStep s;
    s.step = step;
    s.lr = schedule.lr_at(step - 1);
    optimizer->set_lr(s.lr);
    if (hooks.before_step) hooks.before_step(*model, step - 1);
    accumulate_gradients(*model, loader, config.train.grad_accum, device, ranks, s);
    s.grad_norm = clip_gradients(params, config.optim.grad_clip, ranks);
    optimizer->step();
    optimizer->zero_grad();
    if (sharded) sharded->fsdp().after_step();
    s.peak_mem_bytes = memory_stats(device).peak_allocated;
    p.step = step;
    pending.push_back(std::move(s));

    const bool log = step % config.train.log_every == 0 || step == total;
    const bool evaluate_now = eval_loader && config.train.eval_every > 0 && step % config.train.eval_every == 0;
    const bool save_now = config.train.save_every > 0 && step % config.train.save_every == 0 && step != total;
    if (log || evaluate_now || save_now) read_pending();
    if (evaluate_now) run_eval(step);
    if (save_now) save(step);
  }
  const double train_seconds = seconds_since(t_start);
  if (eval_loader && p.eval_step != total) run_eval(total);
  if (saved_step != total) save(total);

  const std::string final_dir = (out / "final").string();
  if (sharded) {
    // Like a checkpoint: rank 0 writes each tensor as the ranks gather it.
    sharded->consolidate({}, [&](const models::ShardedLlama::WholeReader& read) {
      save_model_dir(*model, tokenizer_path, final_dir, hooks.save_weights, read.weight);
    });
  } else {
    save_model_dir(*model, tokenizer_path, final_dir, hooks.save_weights);
  }
  barrier();

  TrainResult result;
  result.steps = total;
  result.start_step = start_step;
  result.train_seconds = train_seconds;
  result.final_loss = p.loss;
  result.final_eval_loss = p.eval_loss;
  result.final_dir = final_dir;
  result.rank = ranks.rank;
  result.ranks = ranks.size;
  if (!sharded) result.model = model;
  return result;
}

TrainResult train(const RunConfig& config, const TrainHooks& hooks) {
  if (!dist::launched_as_rank()) return train_as(config, hooks, Ranks{});
  // Started by mpirun or srun: FSDP over the job's ranks (docs/distributed.md). Rank 0 alone writes output_dir
  // and reports progress; every rank computes.
  dist::CommunicatorOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000));
  options.check_calls = config.dist.check_calls;
  const std::unique_ptr<dist::Communicator> world = dist::world_communicator(options);
  Ranks ranks;
  ranks.comm = ranks.shards = world.get();
  ranks.rank = world->rank();
  ranks.size = world->size();
  std::unique_ptr<dist::NcclCommunicator> nccl;  // outlives the run
  try {
    // GPU ranks: FSDP over NCCL, each rank building its model on its node-local GPU; MPI keeps the host-side
    // exchanges and starts NCCL.
    RunConfig local = config;
    if (parse_device(config.device).is_cuda()) {
      QTUNE_CHECK(config.device == "cuda" || config.device == "cuda:0", "device ", config.device,
                  ": under mpirun each rank trains on its own GPU of the node (the launcher's local rank modulo the "
                  "GPUs): use device=cuda");
      nccl = dist::NcclCommunicator::world(*world, options);
      ranks.shards = nccl.get();
      ranks.given_device = config.device;
      local.device = nccl->device().str();
    }
    return train_as(local, hooks, ranks);
  } catch (const std::exception& e) {
    if (ranks.size == 1) throw;
    // The other ranks would wait for this one in their next collective: end the whole job now, saying why.
    const std::string what = e.what();
    const std::string whose = what.rfind("rank ", 0) == 0 ? "" : "rank " + std::to_string(ranks.rank) + ": ";
    std::fprintf(stderr, "qtune: error: %s%s\n", whose.c_str(), what.c_str());
    world->abort("stopping every rank of the job", 1);
  }
  std::abort();  // not reached: Communicator::abort ends the process, which GCC cannot see through a virtual call
}

}  // namespace qtune::recipes
