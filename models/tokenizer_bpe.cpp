// Byte-level BPE from a Hugging Face tokenizer.json (GPT-2 / Llama 3 family).
//
// Encoding, as the `tokenizers` library does it: added tokens are cut out of the raw text first (leftmost,
// longest) and become their own ids; each stretch between them goes through the pre-tokenizer (Split
// regexes, then ByteLevel: optional prefix space, optional GPT-2 regex, bytes -> stand-in characters)
// and each resulting word through the BPE merges. Decoding maps the pieces' characters back to bytes and
// turns the bytes into text, each ill-formed UTF-8 stretch becoming U+FFFD.
#include <algorithm>
#include <array>
#include <climits>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "models/bpe_byte_level.h"
#include "models/bpe_model.h"
#include "models/bpe_regex.h"
#include "models/tokenizer.h"
#include "models/tokenizer_utf8.h"

namespace qtune::models {

namespace {

using json = nlohmann::json;

// The regex of a ByteLevel pre-tokenizer with use_regex true (GPT-2's word splitting).
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Names used for bos / eos when the post-processor does not say which tokens they are.
constexpr std::array<std::string_view, 3> kBosNames = {"<|begin_of_text|>", "<s>", "<|startoftext|>"};
constexpr std::array<std::string_view, 3> kEosNames = {"<|end_of_text|>", "</s>", "<|endoftext|>"};

// Reads one tokenizer.json; every complaint names the file and the JSON key.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    QTUNE_FAIL(path_, ": ", key, ": ", message);
  }
  const json& member(const json& object, const std::string& name, const std::string& key) const {
    if (!object.is_object() || !object.contains(name)) fail(key, "missing");
    return object.at(name);
  }
  std::string string(const json& object, const std::string& name, const std::string& key) const {
    const json& v = member(object, name, key);
    if (!v.is_string()) fail(key, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }
  // A boolean that may be absent (then `fallback`).
  bool flag(const json& object, const std::string& name, const std::string& key, bool fallback) const {
    if (!object.contains(name) || object.at(name).is_null()) return fallback;
    const json& v = object.at(name);
    if (!v.is_boolean()) fail(key, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  int32_t id(const json& v, const std::string& key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      fail(key, "expected a token id, got " + v.dump());
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  // Fields that change what encode produces and that this reader does not implement must be absent,
  // null or the neutral value.
  void require_neutral(const json& object, const std::string& name, const std::string& key, const json& neutral) const {
    if (object.contains(name) && !object.at(name).is_null() && object.at(name) != neutral) {
      fail(key, "unsupported value " + object.at(name).dump());
    }
  }

 private:
  std::string path_;
};

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const std::string& path);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool add_eos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return bos_; }
  std::optional<int32_t> eos_id() const override { return eos_; }
  std::string id_to_piece(int32_t id) const override {
    QTUNE_CHECK(id >= 0 && id < vocab_size(), path_, ": id ", id, " is outside the vocabulary (size ", vocab_size(),
                ")");
    return pieces_[id];
  }
  std::string kind() const override { return "bpe"; }

 private:
  void read_model(const Reader& r, const json& root);
  void read_added_tokens(const Reader& r, const json& root);
  void read_pre_tokenizer(const Reader& r, const json& root);
  void read_byte_level(const Reader& r, const json& node, const std::string& key);
  void read_post_processor(const Reader& r, const json& root);
  void read_template(const Reader& r, const json& node, const std::string& key);
  void read_decoder(const Reader& r, const json& root);

  // Ids of a stretch of text that holds no added token.
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

  std::string path_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::unique_ptr<BpeRegex>> splits_;  // Split pre-tokenizers, in order
  bool add_prefix_space_ = false;                  // ByteLevel pre-tokenizer
  std::unique_ptr<BpeRegex> byte_level_regex_;     // ByteLevel with use_regex
  std::vector<AddedToken> added_;
  std::array<std::vector<size_t>, 256> added_by_first_byte_;  // indices into added_, longest first
  std::vector<std::string> pieces_;                           // id -> vocabulary entry or added token
  std::vector<uint8_t> is_special_;                           // by id: dropped by decode
  std::optional<int32_t> bos_, eos_;
};

BpeTokenizer::BpeTokenizer(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in.good(), "tokenizer file ", path, " not found or not readable");
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    QTUNE_FAIL(path, ": not valid JSON (", e.what(), ")");
  }
  const Reader r(path);
  if (!root.is_object()) r.fail("(top level)", "expected a JSON object");
  for (const char* key : {"truncation", "padding"}) r.require_neutral(root, key, key, nullptr);
  if (root.contains("normalizer") && !root.at("normalizer").is_null()) {
    r.fail("normalizer", "normalizers are not supported (byte-level BPE files have none): " +
                             root.at("normalizer").dump().substr(0, 200));
  }
  read_model(r, root);
  read_added_tokens(r, root);
  read_pre_tokenizer(r, root);
  read_post_processor(r, root);
  read_decoder(r, root);
  // Without a post-processor naming them, bos / eos are the usual special tokens when present.
  const auto by_name = [&](const auto& names) -> std::optional<int32_t> {
    for (std::string_view name : names) {
      for (const AddedToken& t : added_) {
        if (t.content == name) return t.id;
      }
    }
    return std::nullopt;
  };
  if (!bos_) bos_ = by_name(kBosNames);
  if (!eos_) eos_ = by_name(kEosNames);
}

void BpeTokenizer::read_model(const Reader& r, const json& root) {
  const json& model = r.member(root, "model", "model");
  if (model.contains("type") && r.string(model, "type", "model.type") != "BPE") {
    r.fail("model.type", "only \"BPE\" is supported, not " + model.at("type").dump());
  }
  r.require_neutral(model, "dropout", "model.dropout", 0.0);
  r.require_neutral(model, "continuing_subword_prefix", "model.continuing_subword_prefix", "");
  r.require_neutral(model, "end_of_word_suffix", "model.end_of_word_suffix", "");
  r.require_neutral(model, "byte_fallback", "model.byte_fallback", false);
  r.require_neutral(model, "fuse_unk", "model.fuse_unk", false);

  const json& vocab_json = r.member(model, "vocab", "model.vocab");
  if (!vocab_json.is_object()) r.fail("model.vocab", "expected an object of piece -> id");
  PieceIds vocab;
  vocab.reserve(vocab_json.size());
  int32_t max_id = -1;
  for (const auto& [piece, id_json] : vocab_json.items()) {
    const int32_t id = r.id(id_json, "model.vocab[\"" + piece + "\"]");
    vocab.emplace(piece, id);
    max_id = std::max(max_id, id);
  }
  pieces_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [piece, id] : vocab) pieces_[id] = piece;

  // Merges come as "left right" strings (older files) or as [left, right] pairs (tokenizers >= 0.20).
  std::vector<std::pair<std::string, std::string>> merges;
  const json& merges_json = r.member(model, "merges", "model.merges");
  if (!merges_json.is_array()) r.fail("model.merges", "expected an array");
  merges.reserve(merges_json.size());
  for (size_t i = 0; i < merges_json.size(); ++i) {
    const json& m = merges_json[i];
    const std::string key = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        r.fail(key, "expected \"left right\", got " + m.dump());
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      r.fail(key, "expected \"left right\" or [left, right], got " + m.dump());
    }
  }

  std::optional<int32_t> unk;
  if (model.contains("unk_token") && !model.at("unk_token").is_null()) {
    const std::string name = r.string(model, "unk_token", "model.unk_token");
    const auto it = vocab.find(name);
    if (it == vocab.end()) r.fail("model.unk_token", "\"" + name + "\" is not in model.vocab");
    unk = it->second;
  }
  const bool ignore_merges = r.flag(model, "ignore_merges", "model.ignore_merges", false);
  model_ = std::make_unique<BpeModel>(std::move(vocab), merges, ignore_merges, unk, path_);
}

void BpeTokenizer::read_added_tokens(const Reader& r, const json& root) {
  if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return;
  const json& list = root.at("added_tokens");
  if (!list.is_array()) r.fail("added_tokens", "expected an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "added_tokens[" + std::to_string(i) + "]";
    const json& t = list[i];
    AddedToken token{r.string(t, "content", key + ".content"), r.id(r.member(t, "id", key + ".id"), key + ".id"),
                     r.flag(t, "special", key + ".special", false)};
    if (token.content.empty()) r.fail(key + ".content", "empty");
    // These options make matching depend on the surrounding whitespace; no Llama tokenizer uses them.
    for (const char* option : {"single_word", "lstrip", "rstrip"}) {
      if (r.flag(t, option, key + "." + option, false)) r.fail(key + "." + option, "true is not supported");
    }
    added_.push_back(std::move(token));
  }
  int32_t max_id = static_cast<int32_t>(pieces_.size()) - 1;
  for (const AddedToken& t : added_) max_id = std::max(max_id, t.id);
  pieces_.resize(static_cast<size_t>(max_id + 1));
  is_special_.assign(pieces_.size(), 0);
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& t = added_[i];
    pieces_[t.id] = t.content;
    is_special_[t.id] = t.special ? 1 : 0;
    added_by_first_byte_[static_cast<unsigned char>(t.content[0])].push_back(i);
  }
  for (auto& bucket : added_by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](size_t a, size_t b) { return added_[a].content.size() > added_[b].content.size(); });
  }
}

void BpeTokenizer::read_byte_level(const Reader& r, const json& node, const std::string& key) {
  // `tokenizers` defaults both options to true when a file leaves them out.
  add_prefix_space_ = r.flag(node, "add_prefix_space", key + ".add_prefix_space", true);
  if (r.flag(node, "use_regex", key + ".use_regex", true)) {
    byte_level_regex_ = std::make_unique<BpeRegex>(kByteLevelPattern, false, path_ + ": " + key);
  }
}

void BpeTokenizer::read_pre_tokenizer(const Reader& r, const json& root) {
  const json& node = r.member(root, "pre_tokenizer", "pre_tokenizer");
  if (node.is_null()) r.fail("pre_tokenizer", "null: a byte-level BPE file needs a ByteLevel pre-tokenizer");
  const std::string type = r.string(node, "type", "pre_tokenizer.type");
  if (type == "ByteLevel") {
    read_byte_level(r, node, "pre_tokenizer");
    return;
  }
  if (type != "Sequence") r.fail("pre_tokenizer.type", "\"" + type + "\" is not supported (ByteLevel or Sequence)");
  const json& steps = r.member(node, "pretokenizers", "pre_tokenizer.pretokenizers");
  if (!steps.is_array() || steps.empty()) r.fail("pre_tokenizer.pretokenizers", "expected a non-empty array");
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string key = "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
    const json& step = steps[i];
    const std::string step_type = r.string(step, "type", key + ".type");
    if (step_type == "ByteLevel") {
      // Later steps would see stand-in characters instead of text; no known file does that.
      if (i + 1 != steps.size()) r.fail(key, "ByteLevel must be the last pre-tokenizer of the Sequence");
      read_byte_level(r, step, key);
    } else if (step_type == "Split") {
      const json& pattern = r.member(step, "pattern", key + ".pattern");
      const bool literal = pattern.is_object() && pattern.contains("String");
      const std::string text = literal ? r.string(pattern, "String", key + ".pattern.String")
                                       : r.string(pattern, "Regex", key + ".pattern.Regex");
      const std::string behavior = r.string(step, "behavior", key + ".behavior");
      if (behavior != "Isolated") r.fail(key + ".behavior", "only \"Isolated\" is supported, not \"" + behavior + "\"");
      if (r.flag(step, "invert", key + ".invert", false)) r.fail(key + ".invert", "true is not supported");
      splits_.push_back(std::make_unique<BpeRegex>(text, literal, path_ + ": " + key + ".pattern"));
    } else {
      r.fail(key + ".type", "\"" + step_type + "\" is not supported (Split or ByteLevel)");
    }
  }
  if (steps.back().value("type", "") != "ByteLevel") {
    r.fail("pre_tokenizer.pretokenizers", "the Sequence must end with a ByteLevel pre-tokenizer");
  }
}

void BpeTokenizer::read_template(const Reader& r, const json& node, const std::string& key) {
  // "single" lists the special tokens around the sequence $A: the one before is bos, the one after eos.
  const json& single = r.member(node, "single", key + ".single");
  if (!single.is_array()) r.fail(key + ".single", "expected an array");
  const json& specials = r.member(node, "special_tokens", key + ".special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string item_key = key + ".single[" + std::to_string(i) + "]";
    const json& item = single[i];
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = r.string(r.member(item, "SpecialToken", item_key), "id", item_key + ".SpecialToken.id");
    const json& entry = r.member(specials, name, key + ".special_tokens[\"" + name + "\"]");
    const json& ids = r.member(entry, "ids", key + ".special_tokens[\"" + name + "\"].ids");
    if (!ids.is_array() || ids.size() != 1) {
      r.fail(key + ".special_tokens[\"" + name + "\"].ids", "expected exactly one id, got " + ids.dump());
    }
    const int32_t id = r.id(ids[0], key + ".special_tokens[\"" + name + "\"].ids[0]");
    if (!seen_sequence && !bos_) bos_ = id;
    if (seen_sequence && !eos_) eos_ = id;
  }
}

void BpeTokenizer::read_post_processor(const Reader& r, const json& root) {
  if (!root.contains("post_processor") || root.at("post_processor").is_null()) return;
  const json& node = root.at("post_processor");
  std::vector<std::pair<const json*, std::string>> steps;
  if (r.string(node, "type", "post_processor.type") == "Sequence") {
    const json& list = r.member(node, "processors", "post_processor.processors");
    if (!list.is_array()) r.fail("post_processor.processors", "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      steps.emplace_back(&list[i], "post_processor.processors[" + std::to_string(i) + "]");
    }
  } else {
    steps.emplace_back(&node, "post_processor");
  }
  for (const auto& [step, key] : steps) {
    const std::string type = r.string(*step, "type", key + ".type");
    if (type == "TemplateProcessing") {
      read_template(r, *step, key);
    } else if (type != "ByteLevel") {  // ByteLevel only adjusts offsets, which encode does not return
      r.fail(key + ".type", "\"" + type + "\" is not supported (TemplateProcessing, ByteLevel or Sequence)");
    }
  }
}

void BpeTokenizer::read_decoder(const Reader& r, const json& root) {
  const json& node = r.member(root, "decoder", "decoder");
  if (node.is_null()) r.fail("decoder", "null: a byte-level BPE file needs a ByteLevel decoder");
  const std::string type = r.string(node, "type", "decoder.type");
  if (type != "ByteLevel") r.fail("decoder.type", "only \"ByteLevel\" is supported, not \"" + type + "\"");
}

void BpeTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string_view> pieces{text}, next;
  for (const auto& split : splits_) {
    next.clear();
    for (std::string_view piece : pieces) split->split(piece, next);
    pieces.swap(next);
  }
  std::string prefixed;
  std::vector<std::string_view> words;
  for (std::string_view piece : pieces) {
    if (add_prefix_space_ && piece.front() != ' ') {
      prefixed.resize(piece.size() + 1);
      prefixed[0] = ' ';
      piece.copy(prefixed.data() + 1, piece.size());
      piece = prefixed;
    }
    words.clear();
    if (byte_level_regex_) {
      byte_level_regex_->split(piece, words);
    } else {
      words.push_back(piece);
    }
    for (std::string_view word : words) model_->encode_word(byte_level::encode(word), out);
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  const size_t bad = utf8::first_invalid(text);
  QTUNE_CHECK(bad == std::string_view::npos, path_, ": cannot encode text that is not valid UTF-8 (byte offset ", bad,
              ")");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_) out.push_back(*bos_);
  size_t segment = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* found = nullptr;
    for (size_t i : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (text.substr(pos).starts_with(added_[i].content)) {
        found = &added_[i];
        break;
      }
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    encode_segment(text.substr(segment, pos - segment), out);
    out.push_back(found->id);
    pos += found->content.size();
    segment = pos;
  }
  encode_segment(text.substr(segment), out);
  if (add_eos && eos_) out.push_back(*eos_);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (const int32_t id : ids) {
    QTUNE_CHECK(id >= 0 && id < vocab_size(), path_, ": cannot decode id ", id, ": outside the vocabulary (size ",
                vocab_size(), ")");
    if (!is_special_.empty() && is_special_[id]) continue;
    // A piece whose characters are not all byte stand-ins (an added token such as "<think>" written in
    // plain text) contributes its own UTF-8, as the ByteLevel decoder does.
    if (!byte_level::decode(pieces_[id], bytes)) bytes += pieces_[id];
  }
  return utf8::lossy(bytes);
}

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_json(const std::string& json_path) {
  return std::make_unique<BpeTokenizer>(json_path);
}

}  // namespace qtune::models
