// Evaluation against transformers (tools/goldens/gen_eval.py on tests/golden/tiny_llama_sp): each
// document's log-likelihood in lm-evaluation-harness's rolling windows for several window lengths,
// hellaswag-format log-likelihoods and accuracies; the harness's word count; batching, mode and
// progress; the data readers' errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/eval_data.h"
#include "models/evaluate.h"
#include "models/hf_checkpoint.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::models;
using namespace qtune::data;
using nlohmann::json;

namespace {

const std::string kModel = std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp";
const std::string kEval = std::string(QTUNE_GOLDEN_DIR) + "/eval";
constexpr double kRtol = 1e-4;  // f32 forwards of the same bf16 weights, summed over up to 169 tokens

json expected() {
  std::ifstream in(kEval + "/expected.json");
  return json::parse(in);
}

struct Fixture {
  std::shared_ptr<Llama> model = load_llama(kModel);
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(kModel);
  std::vector<std::string> documents = load_eval_documents(kEval + "/docs.jsonl");
};

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

}  // namespace

TEST_CASE("perplexity: each document's rolling-window log-likelihood equals transformers'") {
  Fixture f;
  const json golden = expected()["perplexity"];
  REQUIRE(f.documents.size() == 4);
  for (const int64_t length : {16, 64, 256}) {
    CAPTURE(length);
    const json& per_doc = golden[std::to_string(length)]["documents"];
    for (size_t d = 0; d < f.documents.size(); ++d) {
      CAPTURE(d);
      const PerplexityResult r = evaluate_perplexity(*f.model, *f.tokenizer, {f.documents[d]}, length);
      CHECK(r.tokens == per_doc[d]["tokens"].get<int64_t>());
      const double ll = per_doc[d]["log_likelihood"].get<double>();
      CHECK(r.log_likelihood == doctest::Approx(ll).epsilon(kRtol));
    }
  }
}

TEST_CASE("perplexity: corpus metrics, the model's length by default, batching changes nothing") {
  Fixture f;
  const json golden = expected()["perplexity"];
  for (const int64_t length : {16, 256}) {
    CAPTURE(length);
    const json& c = golden[std::to_string(length)]["corpus"];
    std::vector<PerplexityResult> runs;
    for (const int64_t batch : {1, 0})
      runs.push_back(evaluate_perplexity(*f.model, *f.tokenizer, f.documents, length == 256 ? 0 : length, {}, batch));
    for (const PerplexityResult& r : runs) {
      CHECK(r.documents == c["documents"].get<int64_t>());
      CHECK(r.tokens == c["tokens"].get<int64_t>());
      CHECK(r.words == c["words"].get<int64_t>());
      CHECK(r.bytes == c["bytes"].get<int64_t>());
      CHECK(r.log_likelihood == doctest::Approx(c["log_likelihood"].get<double>()).epsilon(kRtol));
      CHECK(r.token_loss() == doctest::Approx(c["token_loss"].get<double>()).epsilon(kRtol));
      CHECK(r.token_perplexity() == doctest::Approx(c["token_perplexity"].get<double>()).epsilon(kRtol));
      CHECK(r.word_perplexity() == doctest::Approx(c["word_perplexity"].get<double>()).epsilon(kRtol));
      CHECK(r.byte_perplexity() == doctest::Approx(c["byte_perplexity"].get<double>()).epsilon(kRtol));
      CHECK(r.bits_per_byte() == doctest::Approx(c["bits_per_byte"].get<double>()).epsilon(kRtol));
      // Padding and batch composition may move the last bits of a GEMM, no more.
      CHECK(r.log_likelihood == doctest::Approx(runs[0].log_likelihood).epsilon(1e-6));
    }
  }
}

TEST_CASE("perplexity in bf16 stays near the f32 reference") {
  LoadOptions options;
  options.dtype = DType::bf16;
  const auto model = load_llama(kModel, options);
  const auto tokenizer = load_tokenizer(kModel);
  const auto documents = load_eval_documents(kEval + "/docs.jsonl");
  const double ll = expected()["perplexity"]["64"]["corpus"]["log_likelihood"].get<double>();
  const PerplexityResult r = evaluate_perplexity(*model, *tokenizer, documents, 64);
  CHECK(std::isfinite(r.log_likelihood));
  CHECK(r.log_likelihood == doctest::Approx(ll).epsilon(0.02));
}

TEST_CASE("evaluation restores the train/eval mode and reports progress") {
  Fixture f;
  for (const bool training : {true, false}) {
    f.model->train(training);
    std::vector<std::pair<int64_t, int64_t>> calls;
    const PerplexityResult r = evaluate_perplexity(
        *f.model, *f.tokenizer, f.documents, 16, [&](int64_t done, int64_t total) { calls.emplace_back(done, total); },
        4);
    CHECK(f.model->is_training() == training);
    // 1 + 2 + 11 + 2 windows, 4 per forward
    CHECK(calls == std::vector<std::pair<int64_t, int64_t>>{{4, 16}, {8, 16}, {12, 16}, {16, 16}});
    CHECK(r.tokens > 0);
  }
  f.model->train();
  evaluate_multiple_choice(*f.model, *f.tokenizer, kEval + "/hellaswag.jsonl", 2);
  CHECK(f.model->is_training());
}

TEST_CASE("mean_stream_loss: the loss over the stream's windows, without gradients, the mode restored") {
  Fixture f;
  // 33 tokens are exactly two windows of 16 + 1 sharing one token: one batch of 2.
  std::vector<int32_t> stream(33);
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int32_t>((i * 37 + 5) % 200);
  std::vector<int32_t> tokens, targets;
  for (int w = 0; w < 2; ++w)
    for (int t = 0; t < 16; ++t) {
      tokens.push_back(stream[static_cast<size_t>(w * 16 + t)]);
      targets.push_back(stream[static_cast<size_t>(w * 16 + t + 1)]);
    }
  f.model->train(false);
  const double direct =
      f.model->loss(Tensor::from_vector(tokens, {2, 16}), Tensor::from_vector(targets, {2, 16})).item();
  f.model->train(true);
  const double mean = mean_stream_loss(*f.model, stream, 16, 2);
  CHECK(mean == doctest::Approx(direct).epsilon(1e-6));  // the loader may order the two rows either way
  CHECK(f.model->is_training());
  CHECK_THROWS_AS(mean_stream_loss(*f.model, std::vector<int32_t>(20, 3), 16, 2), Error);
}

TEST_CASE("llama.cpp perplexity: chunks of n_ctx with bos first, the second half of each scored") {
  Fixture f;
  std::string text;
  for (const std::string& d : f.documents) text += d + "\n";
  const std::vector<int32_t> tokens = f.tokenizer->encode(text, true);
  const int64_t n_ctx = 16;
  REQUIRE(static_cast<int64_t>(tokens.size()) >= 2 * n_ctx);
  // The protocol by hand: one forward per chunk, its first input replaced by bos, positions 8..14 predicting
  // tokens 9..15, log-softmax in double.
  double ll = 0;
  int64_t scored = 0;
  const int64_t chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  {
    NoGradGuard no_grad;
    EvalModeGuard eval(*f.model);
    for (int64_t c = 0; c < chunks; ++c) {
      std::vector<int64_t> input(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
      input[0] = *f.tokenizer->bos_id();
      const auto logits = f.model->forward(Tensor::from_vector(input, {1, n_ctx})).to_vector<float>();
      const int64_t vocab = f.model->config().vocab_size;
      for (int64_t j = n_ctx / 2; j < n_ctx - 1; ++j) {
        const float* row = logits.data() + j * vocab;
        double max = row[0], sum = 0;
        for (int64_t v = 0; v < vocab; ++v) max = std::max<double>(max, row[v]);
        for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
        ll += row[tokens[c * n_ctx + j + 1]] - max - std::log(sum);
        ++scored;
      }
    }
  }
  const ChunkedPerplexity r = evaluate_llama_cpp_perplexity(*f.model, *f.tokenizer, text, n_ctx, {}, 3);
  CHECK(r.chunks == chunks);
  CHECK(r.scored == scored);
  CHECK(r.log_likelihood == doctest::Approx(ll).epsilon(1e-5));
  CHECK(r.perplexity() == doctest::Approx(std::exp(-ll / static_cast<double>(scored))).epsilon(1e-5));
  CHECK_THROWS_WITH(evaluate_llama_cpp_perplexity(*f.model, *f.tokenizer, "short", n_ctx),
                    doctest::Contains("a context of 16 needs at least 32"));
  CHECK_THROWS_WITH(evaluate_llama_cpp_perplexity(*f.model, *f.tokenizer, text, 512),
                    doctest::Contains("a context of 512 tokens must be at least 4 and at most the model's 256"));
}

TEST_CASE("multiple choice: ending log-likelihoods, acc and acc_norm equal transformers'") {
  Fixture f;
  const json golden = expected()["hellaswag"];
  const MultipleChoiceResult r = evaluate_multiple_choice(*f.model, *f.tokenizer, kEval + "/hellaswag.jsonl");
  REQUIRE(r.examples == golden["count"].get<int64_t>());
  REQUIRE(r.log_likelihoods.size() == golden["examples"].size());
  for (size_t e = 0; e < r.log_likelihoods.size(); ++e) {
    CAPTURE(e);
    const json& lls = golden["examples"][e]["log_likelihoods"];
    REQUIRE(r.log_likelihoods[e].size() == lls.size());
    for (size_t j = 0; j < lls.size(); ++j) {
      CAPTURE(j);
      CHECK(r.log_likelihoods[e][j] == doctest::Approx(lls[j].get<double>()).epsilon(kRtol));
    }
  }
  CHECK(r.acc == golden["acc"].get<double>());
  CHECK(r.acc_norm == golden["acc_norm"].get<double>());
  CHECK(r.acc != r.acc_norm);  // the data is chosen so that length normalization matters

  // --limit: the first two examples (golden: acc hit then miss; acc_norm miss then hit)
  const MultipleChoiceResult two =
      evaluate_multiple_choice(*f.model, *f.tokenizer, kEval + "/hellaswag.jsonl", 2, {}, 3);
  CHECK(two.examples == 2);
  CHECK(two.acc == 0.5);
  CHECK(two.acc_norm == 0.5);
  CHECK(two.log_likelihoods[1][2] == doctest::Approx(r.log_likelihoods[1][2]).epsilon(1e-6));
}

TEST_CASE("count_words follows re.split(r'\\s+') with Python's Unicode whitespace") {
  CHECK(count_words("") == 1);
  CHECK(count_words("word") == 1);
  CHECK(count_words("two words") == 2);
  CHECK(count_words(" a  b\n") == 4);  // '', 'a', 'b', ''
  CHECK(count_words("a\t\r\n\x0b\x0c b") == 2);
  CHECK(count_words("a\xc2\xa0"
                    "b\xe3\x80\x80"
                    "c\xe2\x80\xa8"
                    "d") == 4);                      // U+00A0, U+3000, U+2028
  CHECK(count_words("zero\xe2\x80\x8bwidth") == 1);  // U+200B is not whitespace
  CHECK(count_words("\xff \xfe") == 2);              // ill-formed bytes are word characters
  CHECK(strip_trailing_space("ends here \t\xe3\x80\x80\n") == "ends here");
  CHECK(strip_trailing_space(" \n") == "");
  CHECK(strip_trailing_space("x\xff") == "x\xff");
}

TEST_CASE("load_eval_documents: JSONL text, plain files, and errors naming file:line") {
  testing::ScratchDir dir("eval_data");
  const std::string jsonl = dir.str("a.jsonl"), txt = dir.str("b.txt");
  write(jsonl, "{\"text\": \"one\"}\n\n  \r\n{\"text\": \"two\\nlines\", \"id\": 7}\r\n");
  CHECK(load_eval_documents(jsonl) == std::vector<std::string>{"one", "two\nlines"});
  write(txt, "plain\ntext\n");
  CHECK(load_eval_documents(txt) == std::vector<std::string>{"plain\ntext\n"});

  const auto fails = [&](const std::string& path, const std::string& content, const std::string& message) {
    CAPTURE(content);
    write(path, content);
    CHECK_THROWS_WITH_AS(load_eval_documents(path), doctest::Contains(message.c_str()), Error);
  };
  fails(jsonl, "{\"text\": \"ok\"}\n{\"text\": 3}\n", jsonl + ":2: \"text\" must be a string");
  fails(jsonl, "{\"text\": \"ok\"}\n\n{\"text\": \"cut\n", jsonl + ":3: not valid JSON");
  fails(jsonl, "{\"body\": \"x\"}\n", jsonl + ":1: no \"text\" key");
  fails(jsonl, "[\"text\"]\n", jsonl + ":1: expected a JSON object");
  fails(jsonl, "\n\n", jsonl + " holds no document");
  fails(txt, "fine\nbad \xff byte\n", txt + ":2: not UTF-8");
  fails(txt, "", txt + " holds no document");
  CHECK_THROWS_WITH_AS(load_eval_documents(dir.str("missing.jsonl")),
                       doctest::Contains((dir.str("missing.jsonl") + " not found").c_str()), Error);
}

TEST_CASE("load_choice_examples: labels as int or string, errors naming file:line") {
  testing::ScratchDir dir("eval_choice");
  const std::string path = dir.str("h.jsonl");
  write(path,
        "{\"ctx\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 1}\n\n"
        "{\"ctx\": \"d \", \"endings\": [\"x\", \"y\", \"z\"], \"label\": \"2\"}\n");
  const auto examples = load_choice_examples(path);
  REQUIRE(examples.size() == 2);
  CHECK(examples[0].label == 1);
  CHECK(examples[1].label == 2);
  CHECK(examples[1].line == 3);
  CHECK(examples[1].endings.size() == 3);
  CHECK(load_choice_examples(path, 1).size() == 1);

  const auto fails = [&](const std::string& content, const std::string& message) {
    CAPTURE(content);
    write(path, content);
    CHECK_THROWS_WITH_AS(load_choice_examples(path), doctest::Contains(message.c_str()), Error);
  };
  fails("{\"ctx\": \"c\", \"endings\": [\"a\"], \"label\": 1}\n",
        path + ":1: \"label\" 1 is not an index of the 1 endings");
  fails("{\"ctx\": \"c\", \"endings\": [\"a\"], \"label\": \"x\"}\n", path + ":1: \"label\" must be an index");
  fails("{\"ctx\": \"c\", \"endings\": [\"a\"], \"label\": 0.5}\n", path + ":1: \"label\" must be an integer");
  fails("{\"ctx\": \"c\", \"endings\": [], \"label\": 0}\n", path + ":1: \"endings\" must be a non-empty list");
  fails("{\"ctx\": \"c\", \"endings\": [\"a\", \"\"], \"label\": 0}\n", path + ":1: ending 1 must be a non-empty");
  fails("{\"endings\": [\"a\"], \"label\": 0}\n", path + ":1: no \"ctx\" key");
  fails("\n", path + " holds no example");
}
