#pragma once
// The qtune CLI's subcommands. Each lives in its own cmd_<name>.cpp and exposes one add_* function
// that attaches a subcommand to the app; main.cpp calls them all. A subcommand's callback stores its
// exit status in `status`, so commands report failure by value and main stays the one place that
// turns exceptions into messages.
#include <string>

#include <CLI/CLI.hpp>

namespace qtune::models {
class Llama;
}

namespace qtune::cli {

// A command that only groups subcommands (`qtune data prepare`): without one it prints the group's help,
// naming its subcommands, and sets status 2.
CLI::App* add_command_group(CLI::App& app, const std::string& name, const std::string& description, int& status);

// The files of a Hugging Face directory that are not weights or config: a model derived from it (quantized,
// exported) keeps them.
inline constexpr const char* kTokenizerFiles[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                                  "special_tokens_map.json", "generation_config.json"};

// Finishes or undoes what a killed qtune left of `dir` (io::StagedDirectory's leftovers of dead processes), and
// says on stderr what it did. An empty `dir` is ignored.
void recover_directory(const std::string& dir);

// Validators whose messages name the bounds as a user reads them (CLI11's own print 1.79e308 for "no limit"):
// an integer in [lo, hi] written as an integer, and a number >= lo.
CLI::Validator integer_in(long long lo, long long hi);
inline constexpr long long kMaxCount = 2147483647;  // the bound of count options: fits every option's integer type
CLI::Validator number_at_least(double lo);
// --as-llama-cpp (eval, generate): a GGUF model's quantized linears computed as llama.cpp's CPU backend does
// (models::compute_as_llama_cpp); the option, and applying it to the loaded model.
CLI::Option* add_as_llama_cpp_flag(CLI::App* cmd, bool& flag);
void apply_as_llama_cpp(const std::string& model_path, models::Llama& model);

// --device: cpu, cuda or cuda:N (checked by parse_device, so a typo is refused before anything loads).
CLI::Option* add_device_option(CLI::App* cmd, std::string& device);

void add_version_command(CLI::App& app, int& status);
void add_bench_command(CLI::App& app, int& status);
void add_demo_command(CLI::App& app, int& status);
void add_tokenizer_command(CLI::App& app, int& status);
void add_info_command(CLI::App& app, int& status);
void add_generate_command(CLI::App& app, int& status);
void add_data_command(CLI::App& app, int& status);
void add_eval_command(CLI::App& app, int& status);
void add_run_command(CLI::App& app, int& status);
void add_plot_command(CLI::App& app, int& status);
void add_quantize_command(CLI::App& app, int& status);
void add_export_command(CLI::App& app, int& status);
void add_plan_command(CLI::App& app, int& status);

}  // namespace qtune::cli
