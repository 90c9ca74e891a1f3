#include "data/bpe_model.h"

#include <algorithm>

#include <queue>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"

namespace qtune::data {

namespace {
constexpr size_t kCacheEntries = 1 << 16;
constexpr size_t kCacheWordBytes = 256;  // longer words are rare and expensive to key
}  // namespace

BpeModel::BpeModel(PieceIds vocab, const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
                   std::optional<int32_t> unk_id, const std::string& where)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges), unk_id_(unk_id) {
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto a = piece_id(left), b = piece_id(right), ab = piece_id(left + right);
    QTUNE_CHECK(a && b && ab, where, ": model.merges[", rank, "] (\"", left, "\", \"", right,
                "\") names a piece that is not in model.vocab");
    // A pair listed twice keeps its first (lowest) rank, as `tokenizers` does.
    merges_.try_emplace(pair_key(*a, *b), Merge{static_cast<int32_t>(rank), *ab});
  }
}

std::optional<int32_t> BpeModel::piece_id(std::string_view piece) const {
  const auto it = vocab_.find(piece);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = piece_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(start), out.end()));
  }
}

// Symbols form a doubly linked list over the word's characters; a min-heap holds candidate merges by
// (rank, position). A popped candidate is stale when either side has changed since it was pushed.
void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    bool alive;
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n = utf8::char_length(word, pos);
    std::optional<int32_t> id = piece_id(word.substr(pos, n));
    pos += n;
    if (!id) id = unk_id_;
    if (!id) continue;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({*id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) heap.push({it->second.rank, left, symbols[left].id, symbols[right].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    if (!left.alive || left.id != c.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges_.at(pair_key(c.left_id, c.right_id)).id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

std::vector<std::pair<int32_t, int32_t>> BpeModel::merges_in_rank_order() const {
  // Ranks may skip a repeated pair's second listing: sorted, not indexed.
  std::vector<std::pair<int32_t, uint64_t>> ranked;
  ranked.reserve(merges_.size());
  for (const auto& [key, merge] : merges_) ranked.emplace_back(merge.rank, key);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::pair<int32_t, int32_t>> out;
  out.reserve(ranked.size());
  for (const auto& [rank, key] : ranked)
    out.emplace_back(static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xffffffffu));
  return out;
}

}  // namespace qtune::data
