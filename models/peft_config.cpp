#include "models/peft_config.h"

#include <algorithm>
#include <filesystem>

#include "engine/check.h"
#include "engine/io/json_reader.h"

namespace qtune::models {

LoraConfig load_adapter_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "adapter_config.json").string();
  QTUNE_CHECK(std::filesystem::is_regular_file(path), path,
              " not found (hint: an adapter directory holds adapter_config.json and adapter_model.safetensors)");
  const io::Json root = io::read_json_file(path);
  const io::JsonFields f(root, path);

  f.expect(f.string("peft_type") == "LORA", "peft_type", "must be \"LORA\"");
  LoraConfig config;
  const io::Json& r = f.required("r");
  f.expect(r.is_number_integer() && r.get<int64_t>() > 0, "r", "must be a positive integer");
  config.rank = r.get<int64_t>();
  config.alpha = f.as_number(f.at("lora_alpha"), "lora_alpha");
  config.dropout = f.number("lora_dropout", config.dropout);
  f.expect(config.dropout >= 0.0 && config.dropout < 1.0, "lora_dropout", "must be a number in [0, 1)");
  const io::Json& targets = f.required("target_modules");
  f.expect(targets.is_array() && !targets.empty(), "target_modules",
           "must be a non-empty list of module names (regular-expression strings are not supported)");
  config.targets.clear();
  for (size_t i = 0; i < targets.size(); ++i)
    config.targets.push_back(f.as_string(targets[i], f.item_name("target_modules", i)));
  // PEFT targets name sets; qtune wants a fixed order for reproducible init.
  std::sort(config.targets.begin(), config.targets.end());
  if (f.has("bias")) f.expect(f.at("bias") == "none", "bias", "must be \"none\" (LoRA biases are not supported)");
  for (const char* flag : {"use_rslora", "use_dora", "fan_in_fan_out"})
    if (f.has(flag)) f.expect(f.at(flag) == false, flag, "must be false (not supported)");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    if (f.has(pattern)) f.expect(f.at(pattern).empty(), pattern, "must be empty (per-module ranks are not supported)");
  if (f.has("modules_to_save"))
    f.expect(f.at("modules_to_save").empty(), "modules_to_save",
             "must be null (fully trained extra modules are not supported)");
  if (f.has("lora_bias")) f.expect(f.at("lora_bias") == false, "lora_bias", "must be false (not supported)");
  f.expect(!f.has("layers_to_transform"), "layers_to_transform", "must be null (not supported)");
  return config;
}

}  // namespace qtune::models
