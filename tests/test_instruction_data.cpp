// Instruction JSONL -> examples, against tools/goldens/gen_instruction_data.py (Python `sentencepiece`
// on the tiny model building the docs/data.md prompts on its own), plus decoding checks of the masking
// and one test per malformed-line rule.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/instruction_data.h"
#include "data/tokenizer.h"
#include "tests/scratch_files.h"

using namespace qtune::data;
using namespace qtune::testing;

namespace {

const std::string kDataDir = std::string(QTUNE_GOLDEN_DIR) + "/data/";

const Tokenizer& tiny() {
  static const auto tok = load_sentencepiece(std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp/tokenizer.model");
  return *tok;
}

const nlohmann::json& goldens() {
  static const nlohmann::json g = [] {
    std::ifstream in(kDataDir + "instruction_goldens.json");
    REQUIRE_MESSAGE(in.good(), "missing golden (regenerate with tools/goldens/gen_instruction_data.py)");
    return nlohmann::json::parse(in);
  }();
  return g;
}

void check_against_golden(const InstructionData& data, const std::string& key) {
  CHECK(data.dropped_examples == goldens().at(key).at("dropped").get<int64_t>());
  const auto& expected = goldens().at(key).at("examples");
  REQUIRE(data.examples.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(key);
    CAPTURE(i);
    CHECK(data.examples[i].tokens == expected[i].at("tokens").get<std::vector<int32_t>>());
    CHECK(data.examples[i].labels == expected[i].at("labels").get<std::vector<int32_t>>());
  }
}

// The targets of an example, in order, as text.
std::string target_text(const Example& ex) {
  std::vector<int32_t> targets;
  for (const int32_t label : ex.labels) {
    if (label != kIgnoreIndex) targets.push_back(label);
  }
  return tiny().decode(targets);
}

std::string load_error(const std::string& jsonl, const std::string& prompt_template = "alpaca") {
  ScratchDir dir("instruction_errors");
  write_bytes(dir.file("bad.jsonl"), jsonl);
  return error_of([&] { load_instruction_jsonl(dir.file("bad.jsonl"), tiny(), {.prompt_template = prompt_template}); });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("alpaca and chat examples equal the reference tokenization, for each option set") {
  for (const std::string name : {"alpaca", "chat"}) {
    const std::string path = kDataDir + name + ".jsonl";
    check_against_golden(load_instruction_jsonl(path, tiny(), {.prompt_template = name}), name);
    check_against_golden(load_instruction_jsonl(path, tiny(), {.prompt_template = name, .train_on_input = true}),
                         name + "_train_on_input");
    const int64_t cut = goldens().at(name + "_cut").at("max_seq_len").get<int64_t>();
    check_against_golden(load_instruction_jsonl(path, tiny(), {.prompt_template = name, .max_seq_len = cut}),
                         name + "_cut");
  }
}

TEST_CASE("labels are shifted targets: the response (and EOS) only, each predicted by the token before it") {
  const auto data = load_instruction_jsonl(kDataDir + "alpaca.jsonl", tiny());
  const Example& ex = data.examples[2];  // "Name the capital." -> "Paris"
  CHECK(tiny().decode(ex.tokens) ==
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName the capital.\n\n### Response:\n Paris");
  CHECK(target_text(ex) == "Paris");
  CHECK(ex.tokens.front() == 1);
  CHECK(ex.tokens.back() == 2);
  CHECK(ex.labels.back() == kIgnoreIndex);
  CHECK(ex.labels[ex.labels.size() - 2] == 2);  // the last response token predicts EOS
  for (size_t i = 0; i + 1 < ex.tokens.size(); ++i) {
    CHECK((ex.labels[i] == kIgnoreIndex || ex.labels[i] == ex.tokens[i + 1]));
  }
  // With input, the "### Input:" section appears.
  CHECK(contains(tiny().decode(data.examples[1].tokens),
                 "### Instruction:\nTranslate to French.\n\n### Input:\nGood "
                 "morning, friend!\n\n### Response:\n"));
}

TEST_CASE("chat: Llama 2 turns, <<SYS>> in the first user turn, BOS/EOS per turn pair, assistant turns trained") {
  const auto data = load_instruction_jsonl(kDataDir + "chat.jsonl", tiny(), {.prompt_template = "chat"});
  const Example& ex = data.examples[1];
  CHECK(tiny().decode(ex.tokens) ==
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 [INST] And 3+3? [/INST] 6");
  CHECK(std::count(ex.tokens.begin(), ex.tokens.end(), 1) == 2);
  CHECK(std::count(ex.tokens.begin(), ex.tokens.end(), 2) == 2);
  CHECK(std::count(ex.labels.begin(), ex.labels.end(), 2) == 2);  // both EOS are targets
  CHECK(target_text(ex) == "4 6");
}

TEST_CASE("truncation keeps the first max_seq_len tokens; an example left without targets is dropped and counted") {
  const auto cut = load_instruction_jsonl(kDataDir + "alpaca.jsonl", tiny(), {.max_seq_len = 10});
  CHECK(cut.examples.empty());
  CHECK(cut.dropped_examples == 4);
  const auto kept =
      load_instruction_jsonl(kDataDir + "alpaca.jsonl", tiny(), {.train_on_input = true, .max_seq_len = 10});
  REQUIRE(kept.examples.size() == 4);
  CHECK(kept.examples[0].tokens.size() == 10);
  CHECK(kept.examples[0].labels[9] != kIgnoreIndex);  // the target after the cut is still the next token
}

TEST_CASE("malformed lines name the file, the line and the field") {
  CHECK(contains(load_error("\n{\"instruction\": \"x\"}\n"), "bad.jsonl:2: missing \"output\""));
  CHECK(contains(load_error("{\"instruction\": \"x\", \"output\": 3}"),
                 "bad.jsonl:1: \"output\" must be a string, got number"));
  CHECK(
      contains(load_error("{\"instruction\": [], \"output\": \"y\"}"), "\"instruction\" must be a string, got array"));
  CHECK(contains(load_error("{\"instruction\": \"x\", \"input\": {}, \"output\": \"y\"}"),
                 "\"input\" must be a string, got object"));
  CHECK(contains(load_error("{\"instruction\": \"x\",\n"), "bad.jsonl:1: not valid JSON"));
  // A number past a double's range (found by fuzz_instruction_jsonl: it escaped as a JSON library exception).
  CHECK(contains(load_error("{\"instruction\": 555e555, \"output\": \"y\"}"), "bad.jsonl:1: not valid JSON"));
  CHECK(contains(load_error("[1, 2]"), "bad.jsonl:1: expected a JSON object, got array"));
  CHECK(contains(load_error("{\"messages\": []}"),
                 "missing \"instruction\" (this line has \"messages\": use the chat template)"));
  CHECK(contains(load_error("{\"instruction\": \"x\", \"output\": \"y\"}", "chat"),
                 "bad.jsonl:1: missing \"messages\" (this line has \"instruction\": use the alpaca template)"));
  CHECK(contains(load_error("{\"messages\": {}}", "chat"), "\"messages\" must be a non-empty list"));
  CHECK(contains(load_error("{\"messages\": [{\"role\": \"user\"}]}", "chat"), "missing messages[0].\"content\""));
  CHECK(contains(load_error("{\"messages\": [{\"role\": \"user\", \"content\": 1}]}", "chat"),
                 "messages[0].\"content\" must be a string, got number"));
  CHECK(contains(load_error("{\"messages\": [\"hi\"]}", "chat"), "messages[0] must be an object, got string"));
  CHECK(contains(load_error("{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}]}", "chat"),
                 "no user / assistant turn"));
  CHECK(contains(load_error("{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}", "chat"),
                 "messages[0].role is \"assistant\", expected \"user\""));
  CHECK(contains(
      load_error("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}",
                 "chat"),
      "messages[1].role is \"user\", expected \"assistant\""));
  CHECK(contains(load_error("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}", "chat"),
                 "the last message must be the assistant's"));
}

TEST_CASE("skip_bad_lines skips and counts malformed lines") {
  ScratchDir dir("instruction_skip");
  write_bytes(dir.file("mixed.jsonl"),
              "{\"instruction\": \"a\", \"output\": \"b\"}\nnot json\n\n{\"output\": \"c\"}\n"
              "{\"instruction\": \"d\", \"output\": \"e\"}\r\n");
  const auto data = load_instruction_jsonl(dir.file("mixed.jsonl"), tiny(), {.skip_bad_lines = true});
  CHECK(data.examples.size() == 2);
  CHECK(data.skipped_lines == 2);
  CHECK(target_text(data.examples[1]) == "e");
}

TEST_CASE("an unknown template or a missing file is an Error") {
  CHECK(contains(
      error_of([] { load_instruction_jsonl(kDataDir + "alpaca.jsonl", tiny(), {.prompt_template = "vicuna"}); }),
      "unknown prompt template \"vicuna\""));
  CHECK(contains(error_of([] { load_instruction_jsonl("/nonexistent/qtune/data.jsonl", tiny()); }),
                 "/nonexistent/qtune/data.jsonl: cannot open"));
}
