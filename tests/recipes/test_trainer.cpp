// The training loop end to end on a tiny Llama: loss goes down, a killed and resumed run reproduces an
// uninterrupted one bit for bit (half-written checkpoints ignored), gradient accumulation matches a
// larger batch, every data format, epochs, and the errors a user meets first.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "data/text_corpus.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "engine/check.h"
#include "engine/io/checkpoint_files.h"
#include "engine/io/safetensors.h"
#include "llama_fixtures.h"
#include "models/hf_checkpoint.h"
#include "recipe_fixtures.h"
#include "scratch_files.h"
#include "tools/recipes/metrics.h"
#include "tools/recipes/run_config.h"
#include "tools/recipes/trainer.h"

using namespace qtune;
using testing::error_of;
using namespace qtune::recipes;
namespace fs = std::filesystem;
using nlohmann::json;
using testing::kText;
using testing::kTokenizer;
using testing::lines_with;
using testing::tiny_run;

TEST_CASE("a tiny Llama learns; the run directory holds metrics, checkpoints and a loadable final model") {
  testing::ScratchDir dir("trainer_learns");
  const std::string out = dir.str("run");
  std::vector<StepMetrics> seen;
  TrainHooks hooks;
  hooks.on_step = [&](const StepMetrics& m) { seen.push_back(m); };
  const TrainResult result =
      train(tiny_run(out, {"train.steps=30", "optim.lr=1e-2", "data.eval=" + kText, "train.eval_every=10",
                           "train.eval_batches=2", "train.save_every=10"}),
            hooks);

  REQUIRE(seen.size() == 30);
  const double first = (seen[0].loss + seen[1].loss + seen[2].loss) / 3;
  const double last = (seen[27].loss + seen[28].loss + seen[29].loss) / 3;
  CHECK_MESSAGE(last < first - 0.5, "loss went from ", first, " to ", last);
  CHECK(seen[0].lr == 0.0);  // warmup starts at 0
  CHECK(seen[2].lr == doctest::Approx(1e-2));
  CHECK(seen.back().peak_mem_bytes > 0);
  CHECK(seen.back().tokens_per_s > 0);

  const auto steps = lines_with(out, "loss"), evals = lines_with(out, "eval_loss");
  REQUIRE(steps.size() == 30);
  for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_bytes", "elapsed_s"}) {
    CHECK_MESSAGE(steps[5].contains(key), key);
  }
  CHECK(steps[29]["loss"].get<double>() == result.final_loss);
  REQUIRE(evals.size() == 3);
  CHECK(evals[2]["step"] == 30);
  CHECK(evals[2]["eval_loss"].get<double>() == result.final_eval_loss);
  CHECK(evals[2]["eval_perplexity"].get<double>() == doctest::Approx(std::exp(result.final_eval_loss)));
  CHECK(evals[0]["eval_loss"].get<double>() > evals[2]["eval_loss"].get<double>());

  CHECK(result.steps == 30);
  CHECK(fs::is_regular_file(out + "/config.json"));
  // keep_checkpoints = 2: step_10 pruned.
  CHECK(!fs::exists(out + "/checkpoints/step_10"));
  CHECK(fs::is_regular_file(out + "/checkpoints/step_20/trainer_state.json"));
  CHECK(fs::is_regular_file(out + "/checkpoints/step_30/optimizer.safetensors"));
  CHECK(fs::is_regular_file(out + "/checkpoints/step_30/tokenizer.model"));

  // final/ is an HF directory with the trained weights.
  REQUIRE(result.final_dir == out + "/final");
  const auto loaded = models::load_llama(result.final_dir);
  const auto tokenizer = data::load_tokenizer(result.final_dir);
  CHECK(tokenizer->vocab_size() == 512);
  const StateDict trained = result.model->state_dict();
  for (const auto& [name, tensor] : loaded->state_dict()) {
    CAPTURE(name);
    CHECK(tensor.to_vector<float>() == trained.at(name).to_vector<float>());
  }

  // A second fresh run into the same directory is refused.
  CHECK(error_of([&] { train(tiny_run(out)); }).find("already holds a run") != std::string::npos);
}

TEST_CASE("a killed run resumed from its checkpoint reproduces the uninterrupted run bit for bit") {
  testing::ScratchDir dir("trainer_resume");
  const std::vector<std::string> common = {"train.save_every=4", "data.eval=" + kText, "train.eval_every=3",
                                           "train.eval_batches=2"};
  const std::string a = dir.str("a"), b = dir.str("b");
  train(tiny_run(a, common));

  // B dies during step 6: step_4 is its newest checkpoint, metrics.jsonl already has steps 5 and 6.
  TrainHooks crash;
  crash.on_step = [](const StepMetrics& m) {
    if (m.step == 6) throw std::runtime_error("simulated kill");
  };
  CHECK_THROWS_AS(train(tiny_run(b, common), crash), std::runtime_error);
  CHECK(lines_with(b, "loss").size() == 6);
  // Half-written checkpoints that resume must pass over.
  fs::create_directories(b + "/checkpoints/.step_8.tmp-4194999");  // a pid above pid_max: a dead process's
  fs::copy(b + "/checkpoints/step_4", b + "/checkpoints/step_9", fs::copy_options::recursive);
  fs::remove(b + "/checkpoints/step_9/trainer_state.json");
  fs::copy(b + "/checkpoints/step_4", b + "/checkpoints/step_10", fs::copy_options::recursive);
  std::ofstream(b + "/checkpoints/step_10/trainer_state.json", std::ios::trunc) << "{\"step\": 10, \"ver";

  std::vector<std::string> notes;
  TrainHooks hooks;
  hooks.on_note = [&](const std::string& text) { notes.push_back(text); };
  std::vector<std::string> resume = common;
  resume.push_back("train.resume=true");
  const TrainResult resumed = train(tiny_run(b, resume), hooks);
  CHECK(resumed.start_step == 4);
  REQUIRE(notes.size() >= 2);
  CHECK(notes[0].find("removed " + b + "/checkpoints/.step_8.tmp-4194999") == 0);
  CHECK(notes[1].find("step_4 at step 4 of 12") != std::string::npos);
  CHECK(!fs::exists(b + "/checkpoints/.step_8.tmp-4194999"));

  const auto la = read_metrics(a + "/metrics.jsonl"), lb = read_metrics(b + "/metrics.jsonl");
  REQUIRE(la.size() == lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    CAPTURE(la[i].dump());
    CAPTURE(lb[i].dump());
    CHECK(la[i]["step"] == lb[i]["step"]);
    for (const char* key : {"loss", "lr", "grad_norm", "eval_loss"}) {
      if (la[i].contains(key)) CHECK(la[i][key].get<double>() == lb[i][key].get<double>());
    }
  }
  const auto fa = io::CheckpointFiles::open(a + "/final"), fb = io::CheckpointFiles::open(b + "/final");
  for (const std::string& name : fa.names()) {
    CAPTURE(name);
    CHECK(fa.tensor(name).to_vector<float>() == fb.tensor(name).to_vector<float>());
  }

  // Resuming with a change that alters the steps names the key.
  CHECK(error_of([&] {
          std::vector<std::string> changed = resume;
          changed.push_back("optim.lr=1e-3");
          train(tiny_run(b, changed));
        }).find("optim.lr differs from the checkpoint's") != std::string::npos);
  // Extending a finished run continues from its last checkpoint.
  resume.push_back("train.steps=14");
  CHECK(train(tiny_run(b, resume)).start_step == 12);
  CHECK(lines_with(b, "loss").size() == 14);
}

TEST_CASE("a resumed run refuses data that changed under the same path") {
  testing::ScratchDir dir("trainer_data_changed");
  const std::string data = dir.str("train.txt");
  fs::copy_file(kText, data);
  const std::vector<std::string> first = {"data.train=" + data, "train.steps=2"};
  train(tiny_run(dir.str("run"), first));
  std::string text = testing::read_bytes(data);
  text[10] = text[10] == 'x' ? 'y' : 'x';  // same size, other contents
  testing::write_bytes(data, text);
  const std::string message = error_of([&] {
    train(tiny_run(dir.str("run"), {"data.train=" + data, "train.steps=4", "train.resume=true"}));
  });
  CHECK(message.find("data.train (" + data + ") changed since the checkpoint was saved") != std::string::npos);
}

TEST_CASE("grad_accum=2 with batch b matches grad_accum=1 with batch 2b") {
  testing::ScratchDir dir("trainer_accum");
  const TrainResult accum =
      train(tiny_run(dir.str("accum"), {"train.steps=5", "data.batch_size=2", "train.grad_accum=2"}));
  const TrainResult big = train(tiny_run(dir.str("big"), {"train.steps=5", "data.batch_size=4"}));
  const auto la = lines_with(dir.str("accum"), "loss"), lb = lines_with(dir.str("big"), "loss");
  REQUIRE(la.size() == 5);
  REQUIRE(lb.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    CHECK(la[i]["loss"].get<double>() == doctest::Approx(lb[i]["loss"].get<double>()).epsilon(1e-5));
    CHECK(la[i]["grad_norm"].get<double>() == doctest::Approx(lb[i]["grad_norm"].get<double>()).epsilon(1e-4));
  }
  CHECK(accum.final_loss == doctest::Approx(big.final_loss).epsilon(1e-5));
}

TEST_CASE("activation checkpointing changes memory, not the numbers") {
  testing::ScratchDir dir("trainer_checkpointing");
  const TrainResult plain = train(tiny_run(dir.str("plain"), {"train.steps=3"}));
  const TrainResult recomputed =
      train(tiny_run(dir.str("recomputed"), {"train.steps=3", "train.activation_checkpointing=true"}));
  const auto lp = lines_with(dir.str("plain"), "loss"), lr = lines_with(dir.str("recomputed"), "loss");
  REQUIRE(lp.size() == 3);
  REQUIRE(lr.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(lp[i]["loss"].get<double>() == doctest::Approx(lr[i]["loss"].get<double>()).epsilon(1e-6));
  }
  CHECK(recomputed.model->options().activation_checkpointing);
}

TEST_CASE("train.epochs sets the length; runs that cannot start fail before writing anything") {
  testing::ScratchDir dir("trainer_epochs");
  const auto tokenizer = data::load_sentencepiece(kTokenizer);
  const int64_t batches =
      data::DataLoader::from_tokens(data::tokenize_text_file(kText, *tokenizer), 32, 4, 3).batches_per_epoch();
  const TrainResult r = train(tiny_run(dir.str("e"), {"train.steps=0", "train.epochs=0.5", "train.grad_accum=2"}));
  CHECK(r.steps == static_cast<int64_t>(std::ceil(0.5 * double(batches) / 2.0)));
  // A run killed before its first checkpoint is resumed from step 0 (it used to be a dead end: a new run said
  // "resume it", the resume "start a new run").
  fs::create_directories(dir.str("none"));
  std::ofstream(dir.str("none/metrics.jsonl")) << "{\"step\": 1, \"loss\": 6.0}\n";
  std::vector<std::string> notes;
  TrainHooks hooks;
  hooks.on_note = [&](const std::string& text) { notes.push_back(text); };
  const TrainResult from_zero = train(tiny_run(dir.str("none"), {"train.resume=true", "train.steps=2"}), hooks);
  CHECK(from_zero.start_step == 0);
  REQUIRE(!notes.empty());
  CHECK(notes[0].find("train.resume: no complete checkpoint in") == 0);
  CHECK(notes[0].find("starting from step 0") != std::string::npos);
  CHECK(lines_with(dir.str("none"), "loss").size() == 2);
  // ...but a run whose checkpoints are all unreadable is not silently restarted over them.
  fs::create_directories(dir.str("damaged/checkpoints/step_3"));
  const std::string damaged = error_of([&] { train(tiny_run(dir.str("damaged"), {"train.resume=true"})); });
  CHECK(damaged.find("has no complete checkpoint to resume from but holds checkpoints/step_3") != std::string::npos);
  CHECK(fs::exists(dir.str("damaged/checkpoints/step_3")));
  std::ofstream(dir.str("short.txt")) << "Too short for one batch.\n";
  CHECK(error_of([&] {
          train(tiny_run(dir.str("short"), {"data.eval=" + dir.str("short.txt")}));
        }).find(dir.str("short.txt") + ": ") != std::string::npos);
  CHECK(!fs::exists(dir.str("short")));  // nothing written for a run that could not start
}

TEST_CASE("token shards with SGD, and instruction JSONL on an HF model directory") {
  testing::ScratchDir dir("trainer_formats");
  const auto tokenizer = data::load_sentencepiece(kTokenizer);
  data::write_token_shard(dir.str("train.tok"), data::tokenize_text_file(kText, *tokenizer), 512);
  // A directory of shards, with SGD for once.
  fs::create_directories(dir.str("shards_in"));
  fs::rename(dir.str("train.tok"), dir.str("shards_in/part-0.tok"));
  const TrainResult shards =
      train(tiny_run(dir.str("shards"), {"data.format=tokens", "data.train=" + dir.str("shards_in"), "train.steps=3",
                                         "optim.name=sgd", "optim.momentum=0.9", "optim.nesterov=true"}));
  CHECK(shards.steps == 3);
  CHECK(std::isfinite(shards.final_loss));

  {
    std::ofstream jsonl(dir.str("alpaca.jsonl"));
    for (int i = 0; i < 12; ++i) {
      jsonl << json{{"instruction", "Say the number " + std::to_string(i) + " in words."},
                    {"input", i % 2 ? "" : "politely"},
                    {"output", "The number is " + std::to_string(i) + ", said the keeper of the lighthouse."}}
                   .dump()
            << "\n";
    }
  }
  const std::string model_dir = std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp";
  const RunConfig sft = parse_run_config(R"({"model": {"path": ")" + model_dir + R"("},
      "data": {"train": ")" + dir.str("alpaca.jsonl") +
                                             R"(", "format": "jsonl", "seq_len": 128, "batch_size": 2},
      "optim": {"lr": 1e-3}, "train": {"steps": 3}, "output_dir": ")" +
                                             dir.str("sft") + R"("})",
                                         "sft");
  const TrainResult r = train(sft);
  CHECK(r.steps == 3);
  CHECK(std::isfinite(r.final_loss));
  CHECK(fs::is_regular_file(dir.str("sft/final/tokenizer.model")));
  CHECK(models::load_llama(r.final_dir)->config().hidden_size == 64);
}

TEST_CASE("model.master_dtype=f32: bf16 compute with f32 masters, kept with the optimizer state, resumed bit for bit") {
  testing::ScratchDir dir("trainer_masters");
  const std::vector<std::string> common = {"model.dtype=bf16", "model.master_dtype=f32", "train.save_every=4"};
  const std::string a = dir.str("a"), b = dir.str("b"), pure = dir.str("pure");
  std::vector<std::string> notes;
  TrainHooks noting;
  noting.on_note = [&](const std::string& text) { notes.push_back(text); };
  const TrainResult full = train(tiny_run(a, common), noting);
  // The run says which path its bf16 GEMMs take.
  CHECK(std::count_if(notes.begin(), notes.end(), [](const std::string& n) { return n.starts_with("bf16 GEMMs: "); }) ==
        1);

  // The optimizer state holds an f32 master per trainable tensor; each bf16 weight is its master rounded.
  const auto state = io::SafetensorsFile::open(a + "/checkpoints/step_12/optimizer.safetensors");
  const std::vector<Tensor> params = full.model->trainable_parameters();
  REQUIRE(!params.empty());
  for (size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    const Tensor master = state.tensor("state." + std::to_string(i) + ".master");
    CHECK(master.dtype() == DType::f32);
    CHECK(params[i].dtype() == DType::bf16);
    CHECK(master.to(DType::bf16).to_vector<float>() == params[i].to_vector<float>());
  }

  // Killed after step 6 and resumed from step_4: the same losses and the same final weights.
  TrainHooks crash;
  crash.on_step = [](const StepMetrics& m) {
    if (m.step == 6) throw std::runtime_error("simulated kill");
  };
  CHECK_THROWS_AS(train(tiny_run(b, common), crash), std::runtime_error);
  std::vector<std::string> resume = common;
  resume.push_back("train.resume=true");
  CHECK(train(tiny_run(b, resume)).start_step == 4);
  const auto la = read_metrics(a + "/metrics.jsonl"), lb = read_metrics(b + "/metrics.jsonl");
  REQUIRE(la.size() == lb.size());
  for (size_t i = 0; i < la.size(); ++i) CHECK(la[i]["loss"].get<double>() == lb[i]["loss"].get<double>());
  const auto fa = io::CheckpointFiles::open(a + "/final"), fb = io::CheckpointFiles::open(b + "/final");
  for (const std::string& name : fa.names()) {
    CAPTURE(name);
    CHECK(fa.tensor(name).to_vector<float>() == fb.tensor(name).to_vector<float>());
  }

  // Pure bf16 trains differently (the masters matter), and a resume cannot drop or add them silently.
  train(tiny_run(pure, {"model.dtype=bf16", "train.save_every=4"}));
  const auto lp = read_metrics(pure + "/metrics.jsonl");
  REQUIRE(lp.size() == la.size());
  CHECK(lp.back()["loss"].get<double>() != la.back()["loss"].get<double>());
  CHECK(error_of([&] {
          train(tiny_run(dir.str("narrow"), {"model.master_dtype=bf16"}));
        }).find("narrower than model.dtype=f32") != std::string::npos);
}
