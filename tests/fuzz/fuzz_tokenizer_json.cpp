// libFuzzer target for byte-level BPE tokenizer.json files (data::load_bpe_json, its pre-tokenizer regexes
// included): a file either loads into a tokenizer that encodes text and decodes what it encoded, or raises
// qtune::Error.
#include <cstdlib>

#include "data/tokenizer.h"
#include "engine/check.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qtune::fuzz::write_input(data, size, "tokenizer.json");
  std::unique_ptr<qtune::data::Tokenizer> tok;
  try {
    tok = qtune::data::load_bpe_json(path);
  } catch (const qtune::Error&) {
    return 0;
  }
  try {
    for (const char* text : {"Hello, world! 123", " \n\t  x", "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", ""}) {
      const std::vector<int32_t> ids = tok->encode(text, true, true);
      for (int32_t id : ids) {
        if (id < 0 || id >= tok->vocab_size()) std::abort();
      }
      tok->decode(ids);
    }
    std::vector<int32_t> every;
    for (int32_t id = 0; id < tok->vocab_size() && id < 4096; ++id) every.push_back(id);
    tok->decode(every);
  } catch (const qtune::Error&) {
  }
  return 0;
}
