// Run configs: strict parsing, overrides, "did you mean", value checks, path resolution, the docs and
// shipped configs, and which differences a resumed run accepts.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "llama_fixtures.h"
#include "scratch_files.h"
#include "tools/recipes/resume_check.h"
#include "tools/recipes/run_config.h"

using namespace qtune;
using testing::error_of;
using namespace qtune::recipes;
namespace fs = std::filesystem;

namespace {

const char* const kInline = R"({
  "output_dir": "out",
  "model": {"config": {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
                       "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
            "tokenizer": "tok.model"},
  "data": {"train": "train.txt", "seq_len": 16, "batch_size": 2},
  "optim": {"lr": 0.01, "betas": [0.8, 0.9]},
  "train": {"steps": 5, "seed": 7}
})";

// kInline with `overrides` must fail with a message holding `needle`.
void fails_with(const std::vector<std::string>& overrides, const std::string& needle) {
  const std::string e = error_of([&] { parse_run_config(kInline, "my.json", overrides); });
  CHECK_MESSAGE(e.find(needle) != std::string::npos, e);
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("a config file sets every section; unset keys keep their defaults") {
  const RunConfig c = parse_run_config(kInline, "inline.json");
  REQUIRE(c.model.config.has_value());
  CHECK(c.model.config->hidden_size == 32);
  CHECK(c.model.config->num_key_value_heads == 2);
  CHECK(c.model.tokenizer == "tok.model");
  CHECK(c.data.seq_len == 16);
  CHECK(c.data.batch_size == 2);
  CHECK(c.optim.lr == 0.01);
  CHECK(c.optim.betas == std::vector<double>{0.8, 0.9});
  CHECK(c.train.steps == 5);
  CHECK(c.train.seed == 7);
  // Defaults from run_config.h.
  CHECK(c.recipe == Recipe::full);
  CHECK(c.quant.scheme == quant::LinearScheme{quant::Int8DynActInt4Weight{32}});
  CHECK_FALSE(c.fp8.recipe.has_value());
  CHECK(c.optim.name == "adamw");
  CHECK(c.schedule.name == "cosine");
  CHECK(c.train.grad_accum == 1);
  CHECK(c.train.keep_checkpoints == 2);
  CHECK(c.data.format == "text");
}

TEST_CASE("overrides: JSON values, bare strings, lists and inline model fields") {
  const RunConfig c =
      parse_run_config(kInline, "inline.json",
                       {"optim.lr=1e-4", "train.resume=true", "data.train=some/dir/corpus.txt", "optim.betas=[0.5,0.6]",
                        "output_dir=2024", "model.config.hidden_size=64", "model.dtype=\"bf16\""});
  CHECK(c.optim.lr == 1e-4);
  CHECK(c.train.resume);
  CHECK(c.data.train == "some/dir/corpus.txt");
  CHECK(c.optim.betas == std::vector<double>{0.5, 0.6});
  CHECK(c.output_dir == "2024");
  CHECK(c.model.config->hidden_size == 64);
  CHECK(c.model.config->num_hidden_layers == 2);
  CHECK(c.model.dtype == "bf16");
}

TEST_CASE("unknown keys name the nearest valid key") {
  CHECK(error_of([] {
          parse_run_config(R"({"optim": {"lrr": 1}})", "my.json");
        }).find("unknown key optim.lrr in my.json (did you mean optim.lr?)") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(kInline, "my.json", {"train.stpes=3"});
        }).find("unknown key train.stpes in override 'train.stpes=3' (did you mean train.steps?)") !=
        std::string::npos);
  // Right name, wrong section.
  CHECK(error_of([] { parse_run_config(R"({"train": {"lr": 1}})", "my.json"); }).find("(did you mean optim.lr?)") !=
        std::string::npos);
  CHECK(error_of([] { parse_run_config(R"({"modle": {}})", "my.json"); }).find("unknown key modle in my.json") !=
        std::string::npos);
  CHECK(error_of([] { parse_run_config(R"({"zzzzzzzzzzzz": 1})", "my.json"); }).find("docs/config.md") !=
        std::string::npos);
}

TEST_CASE("wrong types name the key and the expected type") {
  CHECK(error_of([] {
          parse_run_config(R"({"data": {"seq_len": "long"}})", "my.json");
        }).find("data.seq_len in my.json must be an integer, got string \"long\"") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"data": {"seq_len": 8.0}})", "my.json");
        }).find("data.seq_len in my.json must be an integer") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"optim": {"lr": "fast"}})", "my.json");
        }).find("optim.lr in my.json must be a number") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"train": {"resume": 1}})", "my.json");
        }).find("train.resume in my.json must be true or false") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"quant": {"scheme": 4}})", "my.json");
        }).find("quant.scheme in my.json must be a string, got number 4") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"train": {"seed": -1}})", "my.json");
        }).find("train.seed in my.json must be a non-negative integer") != std::string::npos);
  CHECK(error_of([] { parse_run_config(R"({"optim": 3})", "my.json"); }).find("optim in my.json must be an object") !=
        std::string::npos);
  CHECK(error_of([] {
          parse_run_config(kInline, "my.json", {"train.steps=many"});
        }).find("train.steps in override 'train.steps=many' must be an integer") != std::string::npos);
  CHECK(error_of([] { parse_run_config(kInline, "my.json", {"optim=3"}); }).find("optim in override") !=
        std::string::npos);
  CHECK(error_of([] { parse_run_config(kInline, "my.json", {"optim.lr"}); }).find("expected key=value") !=
        std::string::npos);
  CHECK(error_of([] { parse_run_config("{", "my.json"); }).find("my.json: not valid JSON") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(R"({"model": {"config": {"model_type": "llama"}}})", "my.json");
        }).find("my.json (model.config)") != std::string::npos);
}

TEST_CASE("values are checked after the overrides") {
  fails_with({"model.path=/some/model"}, "give exactly one of model.path");
  fails_with({"model.config=null"}, "give exactly one of model.path");
  fails_with({"model.tokenizer="}, "model.tokenizer in my.json with its overrides is required");
  fails_with({"model.dtype=f64"}, "model.dtype in my.json with its overrides must be one of f32 | bf16");
  fails_with({"model.master_dtype=f16"}, "model.master_dtype in my.json with its overrides must be one of f32 | bf16");
  fails_with({"model.master_dtype=bf16"}, "is bf16, narrower than model.dtype=f32");
  fails_with({"model.tf32=true"}, "model.tf32 in my.json with its overrides applies to f32 models on device=cuda");
  fails_with({"model.tf32=true", "device=cuda", "model.dtype=bf16"}, "not model.dtype=bf16 on device=cuda");
  fails_with({"data.format=csv"}, "data.format");
  fails_with({"data.seq_len=0"}, "data.seq_len in my.json with its overrides must be >= 1, got 0");
  fails_with({"optim.name=adam"}, "optim.name");
  fails_with({"optim.betas=[0.9]"}, "optim.betas");
  fails_with({"schedule.name=step"}, "schedule.name");
  fails_with({"train.steps=0"}, "set train.steps");
  fails_with({"train.grad_accum=0"}, "train.grad_accum");
  fails_with({"train.keep_checkpoints=0"}, "train.keep_checkpoints");
  fails_with({"device=tpu"}, "device in my.json with its overrides: bad device 'tpu'");
  fails_with({"dist.offload=true"}, "dist.offload in my.json with its overrides keeps GPU ranks' shards");
  CHECK(parse_run_config(kInline, "my.json", {"dist.offload=true", "device=cuda"}).dist.offload);
  fails_with({"dist.reduce_dtype=bf16", "model.dtype=bf16"},
             "dist.reduce_dtype in my.json with its overrides must be one of f32");
  fails_with({"dist.reduce_dtype=f32"}, "this model is f32 already");
  CHECK(parse_run_config(kInline, "my.json", {"dist.reduce_dtype=f32", "model.dtype=bf16"}).dist.reduce_dtype == "f32");
  fails_with({"recipe=lorax"},
             "recipe in override 'recipe=lorax': unknown recipe 'lorax' (recipes: full, qat, lora, qlora, qat_lora)");
  CHECK(parse_run_config(kInline, "my.json", {"train.steps=0", "train.epochs=0.5"}).train.epochs == 0.5);
  // Counts past 2^31 are refused, not wrapped or allocated.
  fails_with({"data.batch_size=4294967297"},
             "data.batch_size in my.json with its overrides must be at most 2147483647, got 4294967297");
  fails_with({"train.steps=99999999999"}, "train.steps in my.json with its overrides must be at most 2147483647");
  // Bytes that are not UTF-8 could not be written to the run's config.json (found by fuzz_run_config).
  fails_with({"output_dir=run\xff"}, "bad override 'output_dir=run\xEF\xBF\xBD': byte 14 is not valid UTF-8");
}

TEST_CASE("a key of a section the recipe does not use is refused, even at its default value") {
  fails_with({"quant.scheme=8da4w"}, "quant.scheme in my.json with its overrides configures the qat and qat_lora");
  fails_with({"quant.fake_quant_after_n_steps=0"}, "quant.fake_quant_after_n_steps in my.json with its overrides");
  fails_with({"lora.rank=8"}, "lora.rank in my.json with its overrides configures the lora, qlora and qat_lora");
  const std::string in_file = std::string(kInline).insert(1, R"("quant": {"group_size": 0}, )");
  CHECK(error_of([&] { parse_run_config(in_file, "my.json"); }).find("quant.group_size in my.json configures") == 0);
  CHECK(parse_run_config(kInline, "my.json", {"recipe=qat", "quant.scheme=8da4w"}).recipe == Recipe::qat);
  CHECK(parse_run_config(kInline, "my.json", {"recipe=lora", "lora.rank=8"}).lora.rank == 8);
  // What a run writes leaves out the sections its recipe ignores, so that it parses again.
  const std::string json = run_config_to_json(parse_run_config(kInline, "my.json"));
  CHECK(json.find("\"quant\"") == std::string::npos);
  CHECK(json.find("\"lora\"") == std::string::npos);
  CHECK(json.find("\"fp8\"") != std::string::npos);
  CHECK(run_config_to_json(parse_run_config(json, "again.json")) == json);
}

TEST_CASE("the recipe: typed where it enters, and a config without one takes the command's") {
  // kInline has no `recipe` key.
  CHECK(parse_run_config(kInline, "my.json", {}, Recipe::qat).recipe == Recipe::qat);
  CHECK(parse_run_config(kInline, "my.json", {"lora.rank=4"}, Recipe::lora).lora.rank == 4);
  // Without a command the config's own recipe counts: full by default.
  CHECK(parse_run_config(kInline, "my.json").recipe == Recipe::full);
  // A `recipe` key, in the file or an override, must agree with the command.
  const std::string with_key = std::string(R"({"recipe": "qlora",)") + std::string(kInline).substr(1);
  CHECK(parse_run_config(with_key, "my.json", {}, Recipe::qlora).recipe == Recipe::qlora);
  CHECK(error_of([&] {
          parse_run_config(with_key, "my.json", {}, Recipe::lora);
        }).find("my.json is a config for recipe qlora (its `recipe` key), not lora") != std::string::npos);
  CHECK(error_of([] {
          parse_run_config(kInline, "my.json", {"recipe=qat"}, Recipe::full);
        }).find("my.json is a config for recipe qat (its `recipe` key), not full") != std::string::npos);
  // The command's recipe decides which sections are allowed.
  CHECK(error_of([] {
          parse_run_config(kInline, "my.json", {"lora.rank=4"}, Recipe::qat);
        }).find("configures the lora, qlora and qat_lora recipes; this config's recipe is qat") != std::string::npos);
  for (const Recipe r : {Recipe::full, Recipe::qat, Recipe::lora, Recipe::qlora, Recipe::qat_lora}) {
    CHECK(parse_recipe(recipe_name(r)) == r);
    CHECK(parse_run_config(run_config_to_json(parse_run_config(kInline, "a.json", {}, r)), "b.json").recipe == r);
  }
  CHECK(trains_adapters(Recipe::qlora));
  CHECK_FALSE(trains_adapters(Recipe::qat));
  CHECK(fake_quantizes(Recipe::qat_lora));
  CHECK_FALSE(fake_quantizes(Recipe::lora));
}

TEST_CASE("quant.scheme and quant.group_size become one typed scheme, in either order") {
  const auto scheme = [](std::vector<std::string> overrides) {
    return parse_run_config(kInline, "my.json", overrides, Recipe::qat).quant.scheme;
  };
  CHECK(scheme({}) == quant::LinearScheme{quant::Int8DynActInt4Weight{32}});
  CHECK(scheme({"quant.scheme=int4wo"}) == quant::LinearScheme{quant::Int4WeightOnly{128}});
  CHECK(scheme({"quant.group_size=64", "quant.scheme=int4wo"}) == quant::LinearScheme{quant::Int4WeightOnly{64}});
  CHECK(scheme({"quant.scheme=int4wo", "quant.group_size=64"}) == quant::LinearScheme{quant::Int4WeightOnly{64}});
  CHECK(scheme({"quant.scheme=q8_0"}) == quant::LinearScheme{quant::Q8_0{}});
  const RunConfig c = parse_run_config(kInline, "my.json", {"quant.scheme=int4wo", "quant.group_size=64"}, Recipe::qat);
  // Written back as the keys were given, and read back to the same scheme.
  const std::string json = run_config_to_json(c);
  CHECK(json.find(R"("scheme": "int4wo")") != std::string::npos);
  CHECK(json.find(R"("group_size": 64)") != std::string::npos);
  CHECK(parse_run_config(json, "back.json").quant.scheme == c.quant.scheme);
  // A config built in code must set the scheme and its key together, or its written form would be another run.
  RunConfig built = parse_run_config(kInline, "my.json", {}, Recipe::qat);
  built.quant.scheme = quant::Int4WeightOnly{64};
  CHECK(error_of([&] {
          run_config_to_json(built);
        }).find("quant.scheme int4wo with 64 weights per scale does not match quant.group_size 0") !=
        std::string::npos);
  built.quant.group_size = 64;
  CHECK(parse_run_config(run_config_to_json(built), "back.json").quant.scheme == built.quant.scheme);
  CHECK(parse_run_config(kInline, "my.json", {"fp8.recipe=rowwise"}).fp8.recipe == quant::Float8Recipe::rowwise);
  CHECK(run_config_to_json(parse_run_config(kInline, "my.json")).find(R"("recipe": "")") != std::string::npos);
}

TEST_CASE("run_config_to_json round-trips") {
  const RunConfig c = parse_run_config(kInline, "inline.json", {"schedule.name=linear", "train.grad_accum=3"});
  const std::string json = run_config_to_json(c);
  CHECK(run_config_to_json(parse_run_config(json, "again.json")) == json);
  CHECK(json.find("\"grad_accum\": 3") != std::string::npos);
}

TEST_CASE("input paths in a file resolve against its directory; output_dir and overrides do not") {
  testing::ScratchDir dir("run_config_paths");
  const fs::path file = fs::path(dir.str()) / "configs" / "run.json";
  std::string text = kInline;
  text.replace(text.find("\"tok.model\""), 11, "\"/abs/tok.model\"");
  write(file, text);
  const RunConfig c = load_run_config(file.string(), {"data.eval=held_out.txt"});
  CHECK(c.data.train == (fs::path(dir.str()) / "configs" / "train.txt").string());
  CHECK(c.model.tokenizer == "/abs/tok.model");
  CHECK(c.data.eval == "held_out.txt");
  CHECK(c.output_dir == "out");
  CHECK(error_of([&] { load_run_config(dir.str("missing.json")); }).find("missing.json not found") !=
        std::string::npos);
}

TEST_CASE("docs/config.md documents every key") {
  std::ifstream in(std::string(QTUNE_SOURCE_DIR) + "/docs/config.md");
  REQUIRE(in);
  const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::string& key : run_config_keys()) {
    CHECK_MESSAGE(docs.find("| `" + key + "` |") != std::string::npos, key, " is missing from docs/config.md");
  }
}

TEST_CASE("the shipped configs parse, each named for its recipe (alpaca_qlora.json: recipe qlora)") {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(std::string(QTUNE_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    CAPTURE(entry.path().string());
    const RunConfig c = load_run_config(entry.path().string());
    std::string suffix = "_";
    suffix.append(recipe_name(c.recipe));
    CHECK(entry.path().stem().string().ends_with(suffix));
    ++count;
  }
  CHECK(count >= 6);
}

TEST_CASE("resume accepts changes of length and cadence, and names the first key that changes a step") {
  const RunConfig saved = parse_run_config(kInline, "a.json");
  const std::string saved_json = run_config_to_json(saved);
  CHECK_NOTHROW(check_resume_compatible(
      parse_run_config(kInline, "b.json",
                       {"train.steps=9", "train.resume=true", "train.save_every=2", "output_dir=o2"}),
      1, saved_json, 1, "ckpt"));
  // The same file spelled another way.
  CHECK_NOTHROW(check_resume_compatible(parse_run_config(kInline, "b.json", {"data.train=./sub/../train.txt"}), 1,
                                        saved_json, 1, "ckpt"));
  CHECK(error_of([&] {
          check_resume_compatible(parse_run_config(kInline, "b.json", {"data.seq_len=32"}), 1, saved_json, 1,
                                  "ckpt/step_4");
        }).find("cannot resume from ckpt/step_4: data.seq_len differs from the checkpoint's (16 there, 32 now)") !=
        std::string::npos);
  CHECK(error_of([&] {
          check_resume_compatible(parse_run_config(kInline, "b.json", {"model.config.num_hidden_layers=3"}), 1,
                                  saved_json, 1, "ckpt");
        }).find("model.config.num_hidden_layers differs from the checkpoint's (2 there, 3 now)") != std::string::npos);
  CHECK(error_of([&] {
          check_resume_compatible(parse_run_config(kInline, "b.json", {"train.grad_accum=2"}), 1, saved_json, 1,
                                  "ckpt");
        })
            .find("its steps took 1 batches (1 rank(s) x train.grad_accum 1), this run's take 2 (1 x 2); set "
                  "train.grad_accum=1") != std::string::npos);
  // Another world size with the same batches per step: 4 ranks x 1 = 2 ranks x 2 = 1 process x 4.
  const std::string four_ranks = run_config_to_json(parse_run_config(kInline, "a.json"));
  CHECK_NOTHROW(
      check_resume_compatible(parse_run_config(kInline, "b.json", {"train.grad_accum=2"}), 2, four_ranks, 4, "ckpt"));
  CHECK_NOTHROW(
      check_resume_compatible(parse_run_config(kInline, "b.json", {"train.grad_accum=4"}), 1, four_ranks, 4, "ckpt"));
  CHECK(error_of([&] {
          check_resume_compatible(parse_run_config(kInline, "b.json"), 3, four_ranks, 4, "ckpt");
        }).find("run with a number of ranks that divides 4") != std::string::npos);
}

TEST_CASE("resume reads a checkpoint from before a key existed as that key's default") {
  nlohmann::json old = nlohmann::json::parse(run_config_to_json(parse_run_config(kInline, "a.json")));
  old["model"].erase("master_dtype");
  old["model"].erase("tf32");
  const std::string saved = old.dump();
  CHECK_NOTHROW(check_resume_compatible(parse_run_config(kInline, "b.json"), 1, saved, 1, "ckpt"));
  // Unset and spelled out as the model's dtype mean the same masters; f32 masters under bf16 do not.
  CHECK_NOTHROW(
      check_resume_compatible(parse_run_config(kInline, "b.json", {"model.master_dtype=f32"}), 1, saved, 1, "ckpt"));
  const std::string bf16 =
      run_config_to_json(parse_run_config(kInline, "a.json", {"model.dtype=bf16", "model.master_dtype=bf16"}));
  CHECK_NOTHROW(check_resume_compatible(parse_run_config(kInline, "b.json", {"model.dtype=bf16"}), 1, bf16, 1, "ckpt"));
  CHECK(error_of([&] {
          check_resume_compatible(parse_run_config(kInline, "b.json", {"model.dtype=bf16", "model.master_dtype=f32"}),
                                  1, bf16, 1, "ckpt");
        }).find("model.master_dtype differs from the checkpoint's (\"bf16\" there, \"f32\" now)") != std::string::npos);
}
