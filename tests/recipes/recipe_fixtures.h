#pragma once
// The tiny training run the recipe tests share: a 2-layer, hidden-32 Llama trained from scratch on a
// 14 KB text with the 512-piece test tokenizer.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/recipes/metrics.h"
#include "tools/recipes/run_config.h"

namespace qtune::testing {

inline const std::string kTokenizer = std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp/tokenizer.model";  // 512 pieces
inline const std::string kText = std::string(QTUNE_GOLDEN_DIR) + "/tokenizers/train.txt";                // 14 KB

// A 2-layer, hidden-32 Llama trained from scratch on kText.
inline recipes::RunConfig tiny_run(const std::string& output_dir, std::vector<std::string> overrides = {}) {
  const std::string text = R"({
    "output_dir": ")" + output_dir +
                           R"(",
    "model": {"config": {"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                         "max_position_embeddings": 64},
              "tokenizer": ")" +
                           kTokenizer + R"("},
    "data": {"train": ")" + kText +
                           R"(", "seq_len": 32, "batch_size": 4},
    "optim": {"lr": 3e-3, "weight_decay": 0.01},
    "schedule": {"name": "cosine", "warmup_steps": 2},
    "train": {"steps": 12, "seed": 3}
  })";
  return recipes::parse_run_config(text, "tiny_run", overrides);
}

inline std::vector<nlohmann::json> lines_with(const std::string& run_dir, const char* key) {
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& line : recipes::read_metrics(run_dir + "/metrics.jsonl")) {
    if (line.contains(key)) out.push_back(line);
  }
  return out;
}

}  // namespace qtune::testing
