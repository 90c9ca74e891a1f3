#pragma once
// The BPE model of a tokenizer.json: vocabulary, ranked merges, and the merging of one pre-tokenized
// word (already in byte-level characters) into ids. Merging follows the `tokenizers` library: the
// lowest-ranked adjacent pair is merged first, the leftmost one among equal ranks.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qtune::data {

// Lets string-keyed maps be searched with a string_view, without building a std::string per lookup.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceIds = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `vocab`: piece -> id. `merges`: (left piece, right piece) in rank order; each pair and its
  // concatenation must be in the vocabulary (else an Error naming `where`, e.g. the file). With
  // `ignore_merges`, a word that is itself a vocabulary piece is emitted whole (Llama 3).
  BpeModel(PieceIds vocab, const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
           std::optional<int32_t> unk_id, const std::string& where);

  // Appends the ids of `word`. A character outside the vocabulary becomes the unk id, or is dropped
  // when there is none (what `tokenizers` does).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> piece_id(std::string_view piece) const;
  std::optional<int32_t> unk_id() const { return unk_id_; }
  // The merges as (left id, right id), in rank order.
  std::vector<std::pair<int32_t, int32_t>> merges_in_rank_order() const;
  const PieceIds& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;  // the merged piece
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  PieceIds vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_;
  std::optional<int32_t> unk_id_;

  // Words repeat a lot in text; their ids are remembered (bounded, cleared when full).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace qtune::data
