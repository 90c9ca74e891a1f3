// Helpers every subcommand shares (declared in commands.h).
#include <charconv>
#include <cmath>
#include <string>

#include <fmt/core.h>
#include <qtune/qtune.h>

#include "qtune/commands.h"

namespace qtune::cli {

void recover_directory(const std::string& dir) {
  if (dir.empty()) return;
  try {
    for (const std::string& note : io::recover_staged_directory(dir)) fmt::print(stderr, "[qtune] {}\n", note);
  } catch (const std::exception& e) {  // e.g. a directory this user cannot write: the command may still work
    fmt::print(stderr, "[qtune] warning: could not recover what a killed qtune left beside {}: {}\n", dir, e.what());
  }
}

CLI::Validator integer_in(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        long long value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        const bool whole = error == std::errc() && end == text.data() + text.size();
        if (whole && value >= lo && value <= hi) return "";
        return fmt::format("must be an integer from {} to {}, got {}", lo, hi, text);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

CLI::Option* add_device_option(CLI::App* cmd, std::string& device) {
  const CLI::Validator valid(
      [](std::string& text) -> std::string {
        try {
          parse_device(text);
          return "";
        } catch (const std::exception& e) {
          return e.what();
        }
      },
      "cpu|cuda|cuda:N");
  return cmd->add_option("--device", device, "where the model runs: cpu, cuda or cuda:N")
      ->capture_default_str()
      ->check(valid);
}

CLI::Validator number_at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& text) -> std::string {
        double value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        const bool whole = error == std::errc() && end == text.data() + text.size();
        if (whole && std::isfinite(value) && value >= lo) return "";
        return fmt::format("must be a number >= {}, got {}", lo, text);
      },
      fmt::format("NUMBER >= {}", lo));
}

CLI::Option* add_as_llama_cpp_flag(CLI::App* cmd, bool& flag) {
  return cmd->add_flag("--as-llama-cpp", flag,
                       "with a GGUF --model: compute its quantized linears as llama.cpp's CPU backend does, on the "
                       "file's blocks with inputs rounded to Q8_0 / Q8_K blocks");
}

void apply_as_llama_cpp(const std::string& model_path, models::Llama& model) {
  QTUNE_CHECK(io::is_gguf_file(model_path), "--as-llama-cpp needs a GGUF --model (its tensor types say which ",
              "linears llama.cpp computes with quantized inputs); ", model_path, " is not one");
  const int64_t swapped = models::compute_as_llama_cpp(model, io::GgufFile::open(model_path));
  fmt::print(stderr,
             "[llama.cpp numerics] {} quantized linears computed on the file's blocks, inputs rounded to Q8_0 / Q8_K\n",
             swapped);
}

}  // namespace qtune::cli
