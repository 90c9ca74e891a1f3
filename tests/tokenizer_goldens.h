#pragma once
// Checks of a tokenizer against the goldens of tools/goldens/gen_tokenizers.py, shared by
// test_tokenizer.cpp and test_tokenizer_llama2.cpp. A golden section holds, per held-out sample, the
// reference library's ids (plain and with its own bos/eos handling) and decoded text, plus decode cases:
// explicit id lists, and every prefix of some encodings (partial UTF-8, SentencePiece spaces).
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"

namespace qtune::testing {

inline const std::string kTokenizerGoldenDir = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/";

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing golden file ", path, " (regenerate with tools/goldens/gen_tokenizers.py)");
  return nlohmann::json::parse(in);
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

inline std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every sample through encode (plain, +bos, +eos, both) and decode; `bos_key` names the golden ids with the
// reference's own bos handling: "ids_bos_eos" (sentencepiece's add_bos/add_eos) or "ids_bos" (the
// `tokenizers` post-processor, which adds bos only).
inline void check_tokenizer_goldens(const data::Tokenizer& tok, const nlohmann::json& section,
                                    const nlohmann::json& samples) {
  CHECK(tok.vocab_size() == section.at("vocab_size").get<int64_t>());
  const auto golden_id = [&](const char* key) -> std::optional<int32_t> {
    const auto& v = section.at(key);
    if (v.is_null() || v.get<int32_t>() < 0) return std::nullopt;
    return v.get<int32_t>();
  };
  const std::optional<int32_t> bos = golden_id("bos_id"), eos = golden_id("eos_id");
  CHECK(tok.bos_id() == bos);
  CHECK(tok.eos_id() == eos);
  for (const auto& [id, piece] : section.at("pieces").items()) {
    CHECK(tok.id_to_piece(std::stoi(id)) == piece.get<std::string>());
  }
  const std::vector<int32_t> bos_ids = bos ? std::vector<int32_t>{*bos} : std::vector<int32_t>{};
  const std::vector<int32_t> eos_ids = eos ? std::vector<int32_t>{*eos} : std::vector<int32_t>{};

  const auto& cases = section.at("cases");
  REQUIRE(cases.size() == samples.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string text = samples[i].at("text").get<std::string>();
    CAPTURE(c.at("name").get<std::string>());
    CAPTURE(text);
    const std::vector<int32_t> ids = ids_of(c.at("ids"));
    CHECK(tok.encode(text) == ids);
    CHECK(tok.encode(text, false, true) == concat(ids, eos_ids));
    if (c.contains("ids_bos_eos")) {
      CHECK(tok.encode(text, true, true) == ids_of(c.at("ids_bos_eos")));
      CHECK(tok.encode(text, true, false) == concat(bos_ids, ids));
    } else {
      CHECK(tok.encode(text, true, false) == ids_of(c.at("ids_bos")));
      CHECK(tok.encode(text, true, true) == concat(ids_of(c.at("ids_bos")), eos_ids));
    }
    CHECK(tok.decode(ids) == c.at("decoded").get<std::string>());
    CHECK(tok.decode(concat(concat(bos_ids, ids), eos_ids)) == c.at("decoded").get<std::string>());
    if (c.at("roundtrip").get<bool>()) CHECK(tok.decode(tok.encode(text)) == text);
  }

  for (const auto& d : section.at("decode_cases")) {
    if (d.contains("prefixes_of")) {
      const std::vector<int32_t> ids = ids_of(d.at("prefixes_of"));
      const auto& texts = d.at("texts");
      REQUIRE(texts.size() == ids.size() + 1);
      for (size_t k = 0; k <= ids.size(); ++k) {
        const std::vector<int32_t> prefix(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k));
        CAPTURE(prefix);
        CHECK(tok.decode(prefix) == texts[k].get<std::string>());
      }
    } else {
      CAPTURE(d.at("ids").dump());
      CHECK(tok.decode(ids_of(d.at("ids"))) == d.at("text").get<std::string>());
    }
  }
}

// Streaming every sample's ids, one at a time, gives back decode(ids) piece by piece; with part of the
// ids as the prompt, the pieces add up to what the rest adds to the prompt's text.
inline void check_stream_decoder(const data::Tokenizer& tok, const nlohmann::json& samples) {
  for (const auto& sample : samples) {
    const std::string text = sample.at("text").get<std::string>();
    CAPTURE(sample.at("name").get<std::string>());
    const std::vector<int32_t> ids = tok.encode(text, true, true);
    for (size_t prompt = 0; prompt <= ids.size(); ++prompt) {
      CAPTURE(prompt);
      const std::vector<int32_t> head(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(prompt));
      data::StreamDecoder stream(tok, head);
      std::string streamed;
      for (size_t i = prompt; i < ids.size(); ++i) streamed += stream.push(ids[i]);
      streamed += stream.finish();
      const std::string all = tok.decode(ids), before = tok.decode(head);
      // The property is only defined when the prompt's text is a prefix of the whole text.
      if (all.starts_with(before)) CHECK(streamed == all.substr(before.size()));
    }
  }
}

}  // namespace qtune::testing
