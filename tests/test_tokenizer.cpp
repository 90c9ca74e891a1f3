// Tokenizers against the reference libraries (goldens from tools/goldens/gen_tokenizers.py: Python
// `sentencepiece` and `tokenizers`), load_tokenizer's choice of file, errors that name the file, the
// StreamDecoder's concatenation property, and SentencePiece training.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "data/tokenizer.h"
#include "engine/check.h"
#include "tests/scratch_files.h"
#include "tests/tokenizer_goldens.h"

namespace fs = std::filesystem;
using qtune::Error;
using namespace qtune::data;
using namespace qtune::testing;

namespace {

const nlohmann::json& goldens() {
  static const nlohmann::json g = read_json(kTokenizerGoldenDir + "goldens.json");
  return g;
}

std::string golden_file(const std::string& name) { return kTokenizerGoldenDir + name; }

bool all_byte_pieces(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (const int32_t id : ids) {
    if (!tok.id_to_piece(id).starts_with("<0x")) return false;
  }
  return !ids.empty();
}

}  // namespace

TEST_CASE("goldens record the reference library versions") {
  const auto& v = goldens().at("versions");
  MESSAGE("sentencepiece ", v.at("sentencepiece").get<std::string>(), ", tokenizers ",
          v.at("tokenizers").get<std::string>());
  CHECK(goldens().at("samples").size() >= 20);
}

TEST_CASE("sentencepiece BPE model matches Python sentencepiece") {
  const auto tok = load_sentencepiece(golden_file("sp_bpe.model"));
  CHECK(tok->kind() == "sentencepiece");
  check_tokenizer_goldens(*tok, goldens().at("sp_bpe.model"), goldens().at("samples"));
}

TEST_CASE("sentencepiece falls back to bytes for characters outside its vocabulary") {
  const auto tok = load_sentencepiece(golden_file("sp_bpe.model"));
  // U+A66E (3 UTF-8 bytes) and U+1F99C (4 bytes) never occur in the training text.
  for (const std::string ch : {"\xEA\x99\xAE", "\xF0\x9F\xA6\x9C"}) {
    CAPTURE(ch);
    std::vector<int32_t> ids = tok->encode(ch);
    // The first piece is SentencePiece's dummy-prefix space; the character itself is all byte pieces.
    REQUIRE(ids.size() == ch.size() + 1);
    ids.erase(ids.begin());
    CHECK(all_byte_pieces(*tok, ids));
    CHECK(tok->id_to_piece(ids[0]) == "<0x" + std::string(1, "0123456789ABCDEF"[(ch[0] >> 4) & 15]) +
                                          std::string(1, "0123456789ABCDEF"[ch[0] & 15]) + ">");
    CHECK(tok->decode(tok->encode("a" + ch + "b")) == "a" + ch + "b");
  }
}

TEST_CASE("byte-level BPE, Llama 3 layout, matches the tokenizers library") {
  const auto tok = load_bpe_json(golden_file("llama3_style.json"));
  CHECK(tok->kind() == "bpe");
  check_tokenizer_goldens(*tok, goldens().at("llama3_style.json"), goldens().at("samples"));
  // Special tokens written in the text are matched literally and stay single ids.
  const std::vector<int32_t> ids = tok->encode("<|begin_of_text|>Hi<|end_of_text|>");
  REQUIRE(ids.size() >= 3);
  CHECK(ids.front() == *tok->bos_id());
  CHECK(ids.back() == *tok->eos_id());
  CHECK(tok->decode(ids) == "Hi");
}

TEST_CASE("byte-level BPE, GPT-2 layout (merges as strings, ByteLevel regex, prefix space)") {
  const auto tok = load_bpe_json(golden_file("gpt2_style.json"));
  check_tokenizer_goldens(*tok, goldens().at("gpt2_style.json"), goldens().at("samples"));
  CHECK_FALSE(tok->bos_id().has_value());
}

TEST_CASE("byte-level BPE refuses text that is not UTF-8, naming the file") {
  const auto tok = load_bpe_json(golden_file("llama3_style.json"));
  const std::string message = error_of([&] { tok->encode("ok \xFF no"); });
  CHECK(message.find("llama3_style.json") != std::string::npos);
  CHECK(message.find("byte offset 3") != std::string::npos);
  CHECK(error_of([&] { tok->decode({5, 99999}); }).find("99999") != std::string::npos);
}

TEST_CASE("byte-level BPE encodes a megabyte of text quickly") {
  const auto tok = load_bpe_json(golden_file("llama3_style.json"));
  const std::string base = read_bytes(golden_file("train.txt"));
  std::string text;
  // Numbered lines keep the text from being one cached word stream repeated.
  for (int i = 0; text.size() < (1u << 20); ++i) text += std::to_string(i * 7919) + " " + base;
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok->encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("encoded ", text.size(), " bytes into ", ids.size(), " ids in ", seconds, " s");
  CHECK(seconds < 5.0);  // about 0.2 s on one core; generous for loaded CI machines
  CHECK(tok->decode(ids) == text);
}

TEST_CASE("StreamDecoder pieces add up to decode(ids) for every golden sample") {
  const auto& samples = goldens().at("samples");
  SUBCASE("sentencepiece") { check_stream_decoder(*load_sentencepiece(golden_file("sp_bpe.model")), samples); }
  SUBCASE("bpe llama3") { check_stream_decoder(*load_bpe_json(golden_file("llama3_style.json")), samples); }
  SUBCASE("bpe gpt2") { check_stream_decoder(*load_bpe_json(golden_file("gpt2_style.json")), samples); }
}

TEST_CASE("StreamDecoder holds back an unfinished character") {
  const auto tok = load_sentencepiece(golden_file("sp_bpe.model"));
  std::vector<int32_t> ids = tok->encode("x \xF0\x9F\xA6\x9C y");  // the crab is 4 byte pieces
  StreamDecoder stream(*tok);
  std::vector<std::string> pieces;
  for (const int32_t id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.finish());
  std::string joined;
  for (const auto& p : pieces) {
    CHECK(p.find("\xEF\xBF\xBD") == std::string::npos);  // never a replacement character
    joined += p;
  }
  CHECK(joined == "x \xF0\x9F\xA6\x9C y");
}

TEST_CASE("load_tokenizer: a directory prefers tokenizer.json, else tokenizer.model; a file by its kind") {
  ScratchDir dir("pick");
  fs::copy_file(golden_file("sp_bpe.model"), dir.file("tokenizer.model"));
  CHECK(load_tokenizer(dir.path.string())->kind() == "sentencepiece");
  fs::copy_file(golden_file("llama3_style.json"), dir.file("tokenizer.json"));
  CHECK(load_tokenizer(dir.path.string())->kind() == "bpe");
  // A tokenizer.json this reader does not handle (Llama 2 ships one converted from its .model) yields
  // to the SentencePiece original.
  write_bytes(dir.file("tokenizer.json"), R"({"model": {"type": "Unigram", "vocab": []}})");
  CHECK(load_tokenizer(dir.path.string())->kind() == "sentencepiece");
  fs::remove(dir.file("tokenizer.model"));
  CHECK(error_of([&] { load_tokenizer(dir.path.string()); }).find("model.type") != std::string::npos);

  ScratchDir empty("empty");
  const std::string message = error_of([&] { load_tokenizer(empty.path.string()); });
  CHECK(message.find(empty.path.string()) != std::string::npos);
  CHECK(message.find("tokenizer.json") != std::string::npos);
  CHECK(message.find("tokenizer.model") != std::string::npos);
  CHECK(error_of([&] { load_tokenizer("/nonexistent/qtune/dir"); }).find("/nonexistent/qtune/dir") !=
        std::string::npos);
  // A file is read by its kind: .json byte-level BPE, anything else SentencePiece.
  CHECK(load_tokenizer(golden_file("sp_bpe.model"))->kind() == "sentencepiece");
  CHECK(load_tokenizer(golden_file("gpt2_style.json"))->kind() == "bpe");
}

TEST_CASE("missing and malformed tokenizer files are errors naming the file") {
  ScratchDir dir("errors");
  CHECK(error_of([] { load_sentencepiece("/nonexistent/tok.model"); }).find("/nonexistent/tok.model") !=
        std::string::npos);
  CHECK(error_of([] { load_bpe_json("/nonexistent/tokenizer.json"); }).find("/nonexistent/tokenizer.json") !=
        std::string::npos);

  write_bytes(dir.file("garbage.model"), "this is not a protobuf \x01\x02\x03\xff\xfe");
  CHECK(error_of([&] { load_sentencepiece(dir.file("garbage.model")); }).find("garbage.model") != std::string::npos);

  write_bytes(dir.file("broken.json"), "{\"model\": {\"type\": \"BPE\", ");
  const std::string broken = error_of([&] { load_bpe_json(dir.file("broken.json")); });
  CHECK(broken.find("broken.json") != std::string::npos);
  CHECK(broken.find("not valid JSON") != std::string::npos);

  // Valid JSON with something unsupported: the message names the file and the key.
  const nlohmann::json good = read_json(golden_file("llama3_style.json"));
  const auto rejects = [&](const std::string& key, auto&& edit) {
    nlohmann::json spec = good;
    edit(spec);
    const std::string path = dir.file("edited.json");
    write_bytes(path, spec.dump());
    const std::string message = error_of([&] { load_bpe_json(path); });
    CAPTURE(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(key) != std::string::npos);
  };
  rejects("model.type", [](auto& s) { s["model"]["type"] = "WordPiece"; });
  rejects("normalizer", [](auto& s) { s["normalizer"] = {{"type", "NFC"}}; });
  rejects("pre_tokenizer.pretokenizers[0].behavior",
          [](auto& s) { s["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; });
  rejects("pre_tokenizer.pretokenizers[0].pattern",
          [](auto& s) { s["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; });
  rejects("pre_tokenizer.type", [](auto& s) { s["pre_tokenizer"] = {{"type", "Metaspace"}}; });
  rejects("decoder.type", [](auto& s) { s["decoder"] = {{"type", "WordPiece"}}; });
  rejects("model.merges[0]", [](auto& s) { s["model"]["merges"][0] = "no_space_here"; });
  rejects("model.merges[1]", [](auto& s) { s["model"]["merges"][1] = {"\xE2\x82\xAC\xE2\x82\xAC", "x"}; });
  rejects("model.byte_fallback", [](auto& s) { s["model"]["byte_fallback"] = true; });
  rejects("added_tokens[0].lstrip", [](auto& s) { s["added_tokens"][0]["lstrip"] = true; });
  rejects("post_processor.processors[1].type", [](auto& s) { s["post_processor"]["processors"][1]["type"] = "Bert"; });
  rejects("model.vocab", [](auto& s) { s["model"].erase("vocab"); });
  // Files that used to load and then encode wrongly or allocate without bound.
  rejects("model.vocab in " + dir.file("edited.json") + " is empty", [](auto& s) {
    s["model"]["vocab"] = nlohmann::json::object();
    s["model"]["merges"] = nlohmann::json::array();
  });
  rejects("has no piece for byte 0x0A (\"\xC4\x8A\")", [](auto& s) { s["model"]["vocab"].erase("\xC4\x8A"); });
  rejects("model.vocab in " + dir.file("edited.json") + " gives id 5 to both",
          [](auto& s) { s["model"]["vocab"]["zzz_unused"] = 5; });
  rejects("uses ids up to 1000000000", [](auto& s) { s["added_tokens"][0]["id"] = 1000000000; });
  rejects("added_tokens[0] in " + dir.file("edited.json") + " gives id 7 to",
          [](auto& s) { s["added_tokens"][0]["id"] = 7; });
}

TEST_CASE("byte-level BPE with an unk_token may leave bytes out of its vocabulary") {
  ScratchDir dir("unk");
  nlohmann::json spec = read_json(golden_file("llama3_style.json"));
  const auto& vocab = spec["model"]["vocab"];
  std::string unk_piece;
  for (const auto& [piece, id] : vocab.items()) {
    if (piece.size() > 1 && unk_piece.empty()) unk_piece = piece;
  }
  spec["model"]["unk_token"] = unk_piece;
  spec["model"]["vocab"].erase("\xC4\x8A");  // "\n"'s stand-in
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : spec["model"]["merges"]) {
    const std::string text =
        m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>();
    if (text.find("\xC4\x8A") == std::string::npos) merges.push_back(m);
  }
  spec["model"]["merges"] = merges;
  write_bytes(dir.file("unk.json"), spec.dump());
  const auto tok = load_bpe_json(dir.file("unk.json"));
  const std::vector<int32_t> ids = tok->encode("a\nb");
  CHECK(std::count(ids.begin(), ids.end(), vocab.at(unk_piece).get<int32_t>()) == 1);
}

TEST_CASE("train_sentencepiece: deterministic, loadable, round-trips text") {
  ScratchDir dir("train");
  const std::string input = golden_file("train.txt");
  SentencePieceTrainOptions options;
  options.vocab_size = 1000;
  train_sentencepiece(input, dir.file("a.model"), options);
  train_sentencepiece(input, dir.file("b.model"), options);
  CHECK(read_bytes(dir.file("a.model")) == read_bytes(dir.file("b.model")));
  // Only the model itself is left behind: no .vocab file, no temporary.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 2);

  const auto tok = load_sentencepiece(dir.file("a.model"));
  CHECK(tok->vocab_size() == 1000);
  CHECK(tok->id_to_piece(0) == "<unk>");
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  for (const auto& sample : goldens().at("samples")) {
    const std::string text = sample.at("text").get<std::string>();
    CAPTURE(text);
    CHECK(tok->decode(tok->encode(text, true, true)) == text);  // identity normalization, byte fallback
  }
  CHECK(all_byte_pieces(*tok, std::vector<int32_t>{tok->encode("\xF0\x9F\xA6\x9C")[1]}));

  options.model_type = "unigram";
  train_sentencepiece(input, dir.file("u.model"), options);
  const auto unigram = load_sentencepiece(dir.file("u.model"));
  CHECK(unigram->decode(unigram->encode("Hello, wörld 🦜")) == "Hello, wörld 🦜");
}

TEST_CASE("train_sentencepiece errors name the input") {
  ScratchDir dir("train_errors");
  const std::string missing = error_of([&] { train_sentencepiece("/nonexistent/corpus.txt", dir.file("x.model")); });
  CHECK(missing.find("/nonexistent/corpus.txt") != std::string::npos);

  const std::string input = golden_file("train.txt");
  SentencePieceTrainOptions options;
  options.vocab_size = 100000;
  const std::string too_big = error_of([&] { train_sentencepiece(input, dir.file("x.model"), options); });
  CHECK(too_big.find(input) != std::string::npos);
  CHECK(too_big.find("Vocabulary size") != std::string::npos);
  CHECK_FALSE(fs::exists(dir.file("x.model")));
  CHECK(fs::is_empty(dir.path));

  options.vocab_size = 1000;
  CHECK(error_of([&] { train_sentencepiece(input, "/nonexistent/dir/x.model", options); }).find("/nonexistent/dir") !=
        std::string::npos);
}

TEST_CASE("byte-level BPE handles long runs and many special tokens") {
  const auto tok = load_bpe_json(golden_file("llama3_style.json"));
  for (const std::string unit : {" ", "a", "7", "\n", "!", "\xE4\xB8\xAD"}) {
    std::string text;
    for (int i = 0; i < 200000; ++i) text += unit;
    CAPTURE(unit);
    CHECK(tok->decode(tok->encode(text)) == text);
  }
  std::string chat;
  for (int i = 0; i < 20000; ++i) chat += "<|eot_id|>hi there<|begin_of_text|>";
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok->encode(chat);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 5.0);
  CHECK(std::count(ids.begin(), ids.end(), *tok->bos_id()) == 20000);
}
