// libFuzzer target for eval data: perplexity documents (data::load_eval_documents, JSONL and plain text) and
// hellaswag examples (data::load_choice_examples): well-formed records, or qtune::Error.
#include <cstdlib>

#include "data/eval_data.h"
#include "engine/check.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const char* name : {"eval.jsonl", "eval.txt"}) {
    const std::string path = qtune::fuzz::write_input(data, size, name);
    try {
      if (qtune::data::load_eval_documents(path).empty()) std::abort();
    } catch (const qtune::Error&) {
    }
  }
  try {
    for (const auto& e : qtune::data::load_choice_examples((qtune::fuzz::scratch_dir() / "eval.jsonl").string())) {
      if (e.endings.empty() || e.label < 0 || e.label >= static_cast<int64_t>(e.endings.size())) std::abort();
      for (const std::string& ending : e.endings) {
        if (ending.empty()) std::abort();
      }
    }
  } catch (const qtune::Error&) {
  }
  return 0;
}
