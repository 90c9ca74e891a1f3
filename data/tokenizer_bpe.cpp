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
#include <cstdio>
#include <filesystem>

#include "data/bpe_byte_level.h"
#include "data/bpe_model.h"
#include "data/bpe_regex.h"
#include "data/tokenizer.h"
#include "data/tokenizer_utf8.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/json_reader.h"

namespace qtune::data {

namespace {

// Names used for bos / eos when the post-processor does not say which tokens they are.
constexpr std::array<std::string_view, 3> kBosNames = {"<|begin_of_text|>", "<s>", "<|startoftext|>"};
constexpr std::array<std::string_view, 3> kEosNames = {"<|end_of_text|>", "</s>", "<|endoftext|>"};

// A token id: an integer in [0, INT32_MAX].
int32_t token_id(const io::JsonFields& f, const io::Json& v, const std::string& key) {
  f.expect(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX, key,
           "must be a token id, got " + v.dump());
  return static_cast<int32_t>(v.get<int64_t>());
}

// The id table is as long as the largest id: a file whose ids leave more than 64 Ki of them unused is
// damaged (or an attempt to make the reader allocate without bound), not a tokenizer.
void check_id_range(const io::JsonFields& f, const char* key, int32_t max_id, size_t ids) {
  constexpr int64_t kMaxUnused = 65536;
  f.expect(int64_t{max_id} + 1 - static_cast<int64_t>(ids) <= kMaxUnused, key,
           "uses ids up to " + std::to_string(max_id) + " for " + std::to_string(ids) +
               " tokens: more than 65536 ids would be unused");
}

// Fields that change what encode produces and that this reader does not implement must be absent, null or
// the neutral value.
void require_neutral(const io::JsonFields& f, const char* key, const io::Json& neutral) {
  if (f.has(key) && f.at(key) != neutral) f.fail(key, "has the unsupported value " + f.at(key).dump());
}

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const std::string& path);
  BpeTokenizer(const VocabularyTable& table, const std::string& where);

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
  VocabularyTable vocabulary() const override;
  void save(const std::string& dir) const override;

 private:
  void read_model(const io::JsonFields& root);
  void read_added_tokens(const io::JsonFields& root);
  void read_pre_tokenizer(const io::JsonFields& root);
  void read_byte_level(const io::JsonFields& node);
  void read_post_processor(const io::JsonFields& root);
  void read_template(const io::JsonFields& node);
  void read_decoder(const io::JsonFields& root);
  // is_special_ and added_by_first_byte_ from added_ (pieces_ holds every id).
  void index_added_tokens();

  // Ids of a stretch of text that holds no added token.
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

  std::string path_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::unique_ptr<BpeRegex>> splits_;  // Split pre-tokenizers, in order
  std::vector<std::string> split_patterns_;        // their regexes
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;               // ByteLevel pre-tokenizer
  std::unique_ptr<BpeRegex> byte_level_regex_;  // ByteLevel with use_regex
  std::vector<AddedToken> added_;
  std::array<std::vector<size_t>, 256> added_by_first_byte_;  // indices into added_, longest first
  std::vector<std::string> pieces_;                           // id -> vocabulary entry or added token
  std::vector<uint8_t> is_special_;                           // by id: dropped by decode
  std::optional<int32_t> bos_, eos_;
};

BpeTokenizer::BpeTokenizer(const std::string& path) : path_(path) {
  QTUNE_CHECK(std::filesystem::is_regular_file(path), "tokenizer file ", path, " not found or not readable");
  const io::Json json = io::read_json_file(path);
  const io::JsonFields root(json, path);
  for (const char* key : {"truncation", "padding"}) require_neutral(root, key, nullptr);
  if (root.has("normalizer")) {
    root.fail("normalizer", "must be null: normalizers are not supported (byte-level BPE files have none), got " +
                                root.at("normalizer").dump().substr(0, 200));
  }
  read_model(root);
  read_added_tokens(root);
  read_pre_tokenizer(root);
  read_post_processor(root);
  read_decoder(root);
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

VocabularyTable BpeTokenizer::vocabulary() const {
  VocabularyTable table;
  table.pieces = pieces_;
  table.types.assign(pieces_.size(), TokenType::normal);
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (!pieces_[id].empty()) continue;
    table.pieces[id] = "[PAD" + std::to_string(id) + "]";
    table.types[id] = TokenType::unused;
  }
  for (const AddedToken& t : added_) table.types[t.id] = t.special ? TokenType::control : TokenType::user_defined;
  for (const auto& [left, right] : model_->merges_in_rank_order())
    table.merges.emplace_back(pieces_[left], pieces_[right]);
  table.split_patterns = split_patterns_;
  table.byte_level_regex = byte_level_regex_ != nullptr;
  table.add_prefix_space = add_prefix_space_;
  table.ignore_merges = ignore_merges_;
  table.bos = bos_;
  table.eos = eos_;
  table.unk = model_->unk_id();
  return table;
}

void BpeTokenizer::save(const std::string& dir) const {
  // The parts of the `tokenizers` format this reader reads, in its layout, so transformers loads the file too.
  const VocabularyTable table = vocabulary();
  io::Json vocab = io::Json::object(), merges = io::Json::array(), added = io::Json::array();
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (table.types[id] == TokenType::normal || table.types[id] == TokenType::byte)
      vocab[pieces_[id]] = static_cast<int32_t>(id);
  }
  for (const auto& [left, right] : table.merges) merges.push_back({left, right});
  for (const AddedToken& t : added_) {
    added.push_back({{"id", t.id},
                     {"content", t.content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", t.special}});
  }
  io::Json steps = io::Json::array();
  for (const std::string& pattern : split_patterns_) {
    steps.push_back(
        {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}});
  }
  steps.push_back({{"type", "ByteLevel"},
                   {"add_prefix_space", add_prefix_space_},
                   {"trim_offsets", true},
                   {"use_regex", byte_level_regex_ != nullptr}});
  io::Json post = nullptr;
  if (bos_) {
    const std::string& bos = pieces_[*bos_];
    post = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {*bos_}}, {"tokens", {bos}}}}}}};
  }
  const io::Json model = {{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", table.unk ? io::Json(pieces_[*table.unk]) : io::Json(nullptr)},
                          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"ignore_merges", ignore_merges_},
                          {"vocab", vocab},
                          {"merges", merges}};
  const io::Json file = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", steps}}},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", model}};
  io::write_file_atomic((std::filesystem::path(dir) / "tokenizer.json").string(), file.dump(1) + "\n");
}

void BpeTokenizer::read_model(const io::JsonFields& root) {
  const io::JsonFields model = root.object("model");
  if (model.has("type") && model.string("type") != "BPE") {
    model.fail("type", "must be \"BPE\" (the only model supported), got " + model.at("type").dump());
  }
  require_neutral(model, "dropout", 0.0);
  require_neutral(model, "continuing_subword_prefix", "");
  require_neutral(model, "end_of_word_suffix", "");
  require_neutral(model, "byte_fallback", false);
  require_neutral(model, "fuse_unk", false);

  const io::Json& vocab_json = model.required("vocab");
  if (!vocab_json.is_object()) model.wrong_type("vocab", "an object of piece -> id", vocab_json);
  if (vocab_json.empty()) model.fail("vocab", "is empty: a tokenizer without pieces encodes every text as nothing");
  PieceIds vocab;
  vocab.reserve(vocab_json.size());
  int32_t max_id = -1;
  for (const auto& [piece, id_json] : vocab_json.items()) {
    const int32_t id = token_id(model, id_json, "vocab[\"" + piece + "\"]");
    vocab.emplace(piece, id);
    max_id = std::max(max_id, id);
  }
  check_id_range(model, "vocab", max_id, vocab.size());
  pieces_.assign(static_cast<size_t>(max_id + 1), std::string());
  std::vector<uint8_t> taken(pieces_.size(), 0);
  for (const auto& [piece, id] : vocab) {
    if (taken[id]) {
      model.fail("vocab", "gives id " + std::to_string(id) + " to both \"" + pieces_[id] + "\" and \"" + piece +
                              "\": each id names one piece");
    }
    taken[id] = 1;
    pieces_[id] = piece;
  }

  // Merges come as "left right" strings (older files) or as [left, right] pairs (tokenizers >= 0.20).
  std::vector<std::pair<std::string, std::string>> merges;
  const io::Json& merges_json = model.array("merges");
  merges.reserve(merges_json.size());
  for (size_t i = 0; i < merges_json.size(); ++i) {
    const io::Json& m = merges_json[i];
    const std::string key = model.item_name("merges", i);
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        model.fail(key, "must be \"left right\", got " + m.dump());
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      model.fail(key, "must be \"left right\" or [left, right], got " + m.dump());
    }
  }

  std::optional<int32_t> unk;
  if (model.has("unk_token")) {
    const std::string name = model.string("unk_token");
    const auto it = vocab.find(name);
    if (it == vocab.end()) model.fail("unk_token", "\"" + name + "\" is not in model.vocab");
    unk = it->second;
  }
  // Byte-level BPE spells every text with the 256 byte stand-ins; without one (and no unk_token to stand in)
  // the byte would silently vanish from the encoding.
  if (!unk) {
    for (int b = 0; b < 256; ++b) {
      if (b == 0xC0 || b == 0xC1 || b >= 0xF5) continue;  // never in UTF-8 text, which is all encode accepts
      const char byte = static_cast<char>(b);
      const std::string stand_in = byte_level::encode(std::string_view(&byte, 1));
      if (!vocab.contains(stand_in)) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        model.fail("vocab", std::string("has no piece for byte ") + hex + " (\"" + stand_in +
                                "\"), and no unk_token: text holding that byte could not be encoded");
      }
    }
  }
  ignore_merges_ = model.boolean("ignore_merges", false);
  model_ = std::make_unique<BpeModel>(std::move(vocab), merges, ignore_merges_, unk, path_);
}

void BpeTokenizer::read_added_tokens(const io::JsonFields& root) {
  if (!root.has("added_tokens")) return;
  const io::Json& list = root.array("added_tokens");
  for (size_t i = 0; i < list.size(); ++i) {
    const io::JsonFields t(list[i], path_, root.item_name("added_tokens", i) + ".");
    AddedToken token{t.string("content"), token_id(t, t.required("id"), "id"), t.boolean("special", false)};
    if (token.content.empty()) t.fail("content", "is empty");
    // These options make matching depend on the surrounding whitespace; no Llama tokenizer uses them.
    for (const char* option : {"single_word", "lstrip", "rstrip"}) {
      if (t.boolean(option, false)) t.fail(option, "must be false (true is not supported)");
    }
    added_.push_back(std::move(token));
  }
  const size_t vocab_pieces = pieces_.size();
  int32_t max_id = static_cast<int32_t>(vocab_pieces) - 1;
  for (const AddedToken& t : added_) max_id = std::max(max_id, t.id);
  check_id_range(root, "added_tokens", max_id, vocab_pieces + added_.size());
  std::vector<uint8_t> added_at(static_cast<size_t>(max_id + 1), 0);
  pieces_.resize(static_cast<size_t>(max_id + 1));
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& t = added_[i];
    // An added token may repeat its vocabulary entry (GPT-2's <|endoftext|>), not take another piece's id.
    const bool vocab_piece = static_cast<size_t>(t.id) < vocab_pieces && model_->piece_id(pieces_[t.id]) == t.id;
    if ((vocab_piece && pieces_[t.id] != t.content) || added_at[t.id]) {
      root.fail(root.item_name("added_tokens", i), "gives id " + std::to_string(t.id) + " to \"" + t.content +
                                                       "\", which already names \"" + pieces_[t.id] + "\"");
    }
    added_at[t.id] = 1;
    pieces_[t.id] = t.content;
  }
  index_added_tokens();
}

void BpeTokenizer::index_added_tokens() {
  is_special_.assign(pieces_.size(), 0);
  for (size_t i = 0; i < added_.size(); ++i) {
    is_special_[added_[i].id] = added_[i].special ? 1 : 0;
    added_by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(i);
  }
  for (auto& bucket : added_by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](size_t a, size_t b) { return added_[a].content.size() > added_[b].content.size(); });
  }
}

BpeTokenizer::BpeTokenizer(const VocabularyTable& table, const std::string& where) : path_(where) {
  QTUNE_CHECK(!table.pieces.empty() && table.types.size() == table.pieces.size(), where,
              ": a BPE vocabulary needs its pieces and one token type per piece");
  pieces_ = table.pieces;
  PieceIds vocab;
  vocab.reserve(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const TokenType type = table.types[id];
    QTUNE_CHECK(!pieces_[id].empty(), where, ": token ", id, " is empty");
    if (type == TokenType::control || type == TokenType::user_defined) {
      added_.push_back({pieces_[id], static_cast<int32_t>(id), type == TokenType::control});
    } else if (type != TokenType::unused) {
      QTUNE_CHECK(vocab.emplace(pieces_[id], static_cast<int32_t>(id)).second, where, ": token ", id, " \"",
                  pieces_[id], "\" appears twice");
    }
  }
  ignore_merges_ = table.ignore_merges;
  model_ = std::make_unique<BpeModel>(std::move(vocab), table.merges, ignore_merges_, table.unk, where);
  index_added_tokens();
  for (const std::string& pattern : table.split_patterns)
    splits_.push_back(std::make_unique<BpeRegex>(pattern, false, where + ": pre-tokenizer"));
  split_patterns_ = table.split_patterns;
  if (table.byte_level_regex) byte_level_regex_ = std::make_unique<BpeRegex>(kGpt2SplitPattern, false, where);
  add_prefix_space_ = table.add_prefix_space;
  for (const auto id : {table.bos, table.eos, table.unk})
    QTUNE_CHECK(!id || (*id >= 0 && static_cast<size_t>(*id) < pieces_.size()), where, ": special token id ", *id,
                " is outside the vocabulary (size ", pieces_.size(), ")");
  bos_ = table.bos;
  eos_ = table.eos;
}

void BpeTokenizer::read_byte_level(const io::JsonFields& node) {
  // `tokenizers` defaults both options to true when a file leaves them out.
  add_prefix_space_ = node.boolean("add_prefix_space", true);
  if (node.boolean("use_regex", true)) {
    byte_level_regex_ = std::make_unique<BpeRegex>(kGpt2SplitPattern, false, path_ + ": " + node.name("use_regex"));
  }
}

void BpeTokenizer::read_pre_tokenizer(const io::JsonFields& root) {
  if (!root.has("pre_tokenizer"))
    root.fail("pre_tokenizer", "is missing: a byte-level BPE file needs a ByteLevel pre-tokenizer");
  const io::JsonFields node = root.object("pre_tokenizer");
  const std::string type = node.string("type");
  if (type == "ByteLevel") {
    read_byte_level(node);
    return;
  }
  if (type != "Sequence") node.fail("type", "\"" + type + "\" is not supported (ByteLevel or Sequence)");
  const io::Json& steps = node.array("pretokenizers");
  node.expect(!steps.empty(), "pretokenizers", "must not be empty");
  std::string step_type;
  for (size_t i = 0; i < steps.size(); ++i) {
    const io::JsonFields step(steps[i], path_, node.name(node.item_name("pretokenizers", i)) + ".");
    step_type = step.string("type");
    if (step_type == "ByteLevel") {
      // Later steps would see stand-in characters instead of text; no known file does that.
      if (i + 1 != steps.size()) step.fail("type", "ByteLevel must be the last pre-tokenizer of the Sequence");
      read_byte_level(step);
    } else if (step_type == "Split") {
      const io::JsonFields pattern = step.object("pattern");
      const bool literal = pattern.has("String");
      const std::string text = literal ? pattern.string("String") : pattern.string("Regex");
      const std::string behavior = step.string("behavior");
      if (behavior != "Isolated")
        step.fail("behavior", "must be \"Isolated\" (the only one supported), got \"" + behavior + "\"");
      if (step.boolean("invert", false)) step.fail("invert", "must be false (true is not supported)");
      splits_.push_back(std::make_unique<BpeRegex>(text, literal, path_ + ": " + step.name("pattern")));
      split_patterns_.push_back(text);
    } else {
      step.fail("type", "\"" + step_type + "\" is not supported (Split or ByteLevel)");
    }
  }
  if (step_type != "ByteLevel") node.fail("pretokenizers", "must end with a ByteLevel pre-tokenizer");
}

void BpeTokenizer::read_template(const io::JsonFields& node) {
  // "single" lists the special tokens around the sequence $A: the one before is bos, the one after eos.
  const io::Json& single = node.array("single");
  const io::JsonFields specials = node.object("special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const io::JsonFields item(single[i], path_, node.name(node.item_name("single", i)) + ".");
    if (item.present("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.object("SpecialToken").string("id");
    const io::JsonFields entry = specials.object(name);
    const io::Json& ids = entry.array("ids");
    entry.expect(ids.size() == 1, "ids", "must hold exactly one id, got " + ids.dump());
    const int32_t id = token_id(entry, ids[0], entry.item_name("ids", 0));
    if (!seen_sequence && !bos_) bos_ = id;
    if (seen_sequence && !eos_) eos_ = id;
  }
}

void BpeTokenizer::read_post_processor(const io::JsonFields& root) {
  if (!root.has("post_processor")) return;
  const io::JsonFields node = root.object("post_processor");
  std::vector<io::JsonFields> steps;
  if (node.string("type") == "Sequence") {
    const io::Json& list = node.array("processors");
    for (size_t i = 0; i < list.size(); ++i)
      steps.emplace_back(list[i], path_, node.name(node.item_name("processors", i)) + ".");
  } else {
    steps.push_back(node);
  }
  for (const io::JsonFields& step : steps) {
    const std::string type = step.string("type");
    if (type == "TemplateProcessing") {
      read_template(step);
    } else if (type != "ByteLevel") {  // ByteLevel only adjusts offsets, which encode does not return
      step.fail("type", "\"" + type + "\" is not supported (TemplateProcessing, ByteLevel or Sequence)");
    }
  }
}

void BpeTokenizer::read_decoder(const io::JsonFields& root) {
  if (!root.has("decoder")) root.fail("decoder", "is missing: a byte-level BPE file needs a ByteLevel decoder");
  const std::string type = root.object("decoder").string("type");
  if (type != "ByteLevel")
    root.fail("decoder.type", "must be \"ByteLevel\" (the only decoder supported), got \"" + type + "\"");
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

std::unique_ptr<Tokenizer> bpe_from_table(const VocabularyTable& table, const std::string& where) {
  return std::make_unique<BpeTokenizer>(table, where);
}

}  // namespace qtune::data
