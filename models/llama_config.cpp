#include "models/llama_config.h"

#include <filesystem>

#include "engine/check.h"
#include "engine/host_memory.h"
#include "engine/io/json_reader.h"

namespace qtune::models {
namespace {

using io::Json;
using io::JsonFields;

// An int or a list of ints (eos_token_id); empty when absent or null.
std::vector<int32_t> integers(const JsonFields& f, const char* key) {
  if (!f.has(key)) return {};
  const Json& v = f.at(key);
  if (v.is_number_integer()) return {static_cast<int32_t>(f.as_integer(v, key))};
  if (!v.is_array()) f.wrong_type(key, "an integer or a list of integers", v);
  std::vector<int32_t> out;
  for (const Json& item : v) {
    if (!item.is_number_integer()) f.wrong_type(key, "an integer or a list of integers", v);
    out.push_back(item.get<int32_t>());
  }
  return out;
}

// transformers 4 writes `rope_theta` and `rope_scaling`; transformers 5 writes `rope_parameters`
// holding both. Either describes the same rotation.
void parse_rope(const JsonFields& f, LlamaConfig& c) {
  c.rope_theta = f.number("rope_theta", c.rope_theta);
  const char* key = f.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  if (!f.has(key)) return;
  const JsonFields rope = f.object(key);
  c.rope_theta = rope.number("rope_theta", c.rope_theta);
  // Older files name the kind `type`, newer ones `rope_type`.
  const std::string type = rope.has("rope_type") ? rope.string("rope_type") : rope.string("type", "default");
  if (type == "default") return;
  if (type != "llama3")
    QTUNE_FAIL(f.source(), ": unsupported ", rope.name("rope_type"), " \"", type,
               "\" (supported: \"default\", \"llama3\")");
  c.rope_scaling.type = ops::RopeScaling::Type::llama3;
  c.rope_scaling.factor = rope.number("factor");
  c.rope_scaling.low_freq_factor = rope.number("low_freq_factor");
  c.rope_scaling.high_freq_factor = rope.number("high_freq_factor");
  c.rope_scaling.original_max_position_embeddings = rope.integer("original_max_position_embeddings");
}

void reject_unsupported(const JsonFields& f) {
  for (const char* key : {"attention_bias", "mlp_bias"})
    QTUNE_CHECK(!f.boolean(key, false), f.source(), ": ", key,
                " = true is not supported (Llama projections have no bias)");
  const std::string act = f.string("hidden_act", "silu");
  QTUNE_CHECK(act == "silu", f.source(), ": hidden_act \"", act, "\" is not supported (only \"silu\")");
}

}  // namespace

double LlamaConfig::parameter_count() const {
  const double d = double(resolved_head_dim()), c = double(hidden_size);
  const double attention = c * double(num_attention_heads) * d * 2 + c * double(num_key_value_heads) * d * 2;
  const double layer = attention + 3 * c * double(intermediate_size) + 2 * c;
  const double embeddings = double(vocab_size) * c * (tie_word_embeddings ? 1 : 2);
  return embeddings + double(num_hidden_layers) * layer + c;
}

int64_t LlamaConfig::num_parameters() const { return static_cast<int64_t>(parameter_count()); }

void check_fits_memory(const LlamaConfig& c, double bytes_per_parameter, const std::string& source) {
  const double needed = c.parameter_count() * bytes_per_parameter, available = double(host_memory_bytes());
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  QTUNE_CHECK(needed <= available, source, ": a Llama with vocab_size ", c.vocab_size, ", hidden_size ", c.hidden_size,
              ", intermediate_size ", c.intermediate_size, ", num_hidden_layers ", c.num_hidden_layers, " has ",
              c.parameter_count(), " parameters, whose weights need ", needed / kGiB, " GiB at ",
              bytes_per_parameter * 8, " bits each: more than this machine's ", available / kGiB,
              " GiB of memory (RAM + swap, or the container's limit when lower)");
}

void LlamaConfig::validate() const {
  const std::pair<const char*, int64_t> sizes[] = {{"vocab_size", vocab_size},
                                                   {"hidden_size", hidden_size},
                                                   {"intermediate_size", intermediate_size},
                                                   {"num_hidden_layers", num_hidden_layers},
                                                   {"num_attention_heads", num_attention_heads},
                                                   {"num_key_value_heads", num_key_value_heads},
                                                   {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [name, value] : sizes)
    QTUNE_CHECK(value > 0, "LlamaConfig: ", name, " must be positive, got ", value);
  QTUNE_CHECK(head_dim >= 0,
              "LlamaConfig: head_dim must be positive (or 0 for hidden_size / num_attention_heads), got ", head_dim);
  QTUNE_CHECK(num_attention_heads % num_key_value_heads == 0, "LlamaConfig: num_attention_heads (", num_attention_heads,
              ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  QTUNE_CHECK(head_dim > 0 || hidden_size % num_attention_heads == 0, "LlamaConfig: hidden_size (", hidden_size,
              ") must be divisible by num_attention_heads (", num_attention_heads, ") when head_dim is not given");
  QTUNE_CHECK(resolved_head_dim() % 2 == 0, "LlamaConfig: head_dim must be even for rotary embeddings, got ",
              resolved_head_dim());
  // Sizes that multiply past 2^53 parameters are no model: they would overflow the byte counts computed from them.
  QTUNE_CHECK(parameter_count() < 0x1p53, "LlamaConfig: vocab_size ", vocab_size, ", hidden_size ", hidden_size,
              ", intermediate_size ", intermediate_size, ", num_hidden_layers ", num_hidden_layers, " and head_dim ",
              resolved_head_dim(), " give ", parameter_count(), " parameters, which no machine holds");
  QTUNE_CHECK(rms_norm_eps > 0.0, "LlamaConfig: rms_norm_eps must be positive, got ", rms_norm_eps);
  QTUNE_CHECK(rope_theta > 0.0, "LlamaConfig: rope_theta must be positive, got ", rope_theta);
  if (rope_scaling.type == ops::RopeScaling::Type::llama3) {
    QTUNE_CHECK(rope_scaling.factor > 0.0, "LlamaConfig: rope_scaling.factor must be positive, got ",
                rope_scaling.factor);
    QTUNE_CHECK(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor,
                "LlamaConfig: rope_scaling.high_freq_factor (", rope_scaling.high_freq_factor,
                ") must exceed rope_scaling.low_freq_factor (", rope_scaling.low_freq_factor, ")");
    QTUNE_CHECK(rope_scaling.original_max_position_embeddings > 0,
                "LlamaConfig: rope_scaling.original_max_position_embeddings must be positive, got ",
                rope_scaling.original_max_position_embeddings);
  }
}

bool operator==(const LlamaConfig& a, const LlamaConfig& b) {
  const auto& ra = a.rope_scaling;
  const auto& rb = b.rope_scaling;
  const bool same_rope =
      ra.type == rb.type && (ra.type == ops::RopeScaling::Type::none ||
                             (ra.factor == rb.factor && ra.low_freq_factor == rb.low_freq_factor &&
                              ra.high_freq_factor == rb.high_freq_factor &&
                              ra.original_max_position_embeddings == rb.original_max_position_embeddings));
  return same_rope && a.vocab_size == b.vocab_size && a.hidden_size == b.hidden_size &&
         a.intermediate_size == b.intermediate_size && a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads && a.num_key_value_heads == b.num_key_value_heads &&
         a.resolved_head_dim() == b.resolved_head_dim() && a.rms_norm_eps == b.rms_norm_eps &&
         a.rope_theta == b.rope_theta && a.max_position_embeddings == b.max_position_embeddings &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.bos_token_id == b.bos_token_id &&
         a.eos_token_ids == b.eos_token_ids && a.torch_dtype == b.torch_dtype;
}

namespace {

LlamaConfig config_from_json(const Json& root, const std::string& source, bool check_fits) {
  const JsonFields f(root, source);
  const std::string model_type = f.string("model_type");
  QTUNE_CHECK(model_type == "llama", source, ": unsupported model_type \"", model_type, "\" (expected \"llama\")");
  reject_unsupported(f);

  LlamaConfig c;
  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.num_hidden_layers = f.integer("num_hidden_layers");
  c.num_attention_heads = f.integer("num_attention_heads");
  // transformers: num_key_value_heads None means multi-head attention.
  c.num_key_value_heads = f.integer("num_key_value_heads", c.num_attention_heads);
  c.head_dim = f.integer("head_dim", 0);
  c.rms_norm_eps = f.number("rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = f.integer("max_position_embeddings", c.max_position_embeddings);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  parse_rope(f, c);
  // Absent: transformers' defaults (1 and 2); null: none.
  if (f.present("bos_token_id")) c.bos_token_id = static_cast<int32_t>(f.integer("bos_token_id", -1));
  if (f.present("eos_token_id")) c.eos_token_ids = integers(f, "eos_token_id");
  // transformers 5 renamed torch_dtype to dtype.
  c.torch_dtype = f.has("dtype") ? f.string("dtype") : f.string("torch_dtype", "float32");
  try {
    c.validate();
  } catch (const Error& e) {
    QTUNE_FAIL(source, ": ", e.what());
  }
  if (check_fits) check_fits_memory(c, 0.5, source);
  return c;
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& source) {
  return config_from_json(io::parse_json(json_text, source), source, true);
}

LlamaConfig load_llama_config(const std::string& path, bool check_fits) {
  namespace fs = std::filesystem;
  // Anything but an existing file is taken for a model directory, so the error names the file expected.
  const std::string file = fs::is_regular_file(path) ? path : (fs::path(path) / "config.json").string();
  QTUNE_CHECK(fs::is_regular_file(file), file, " not found (a Llama model directory holds config.json)");
  return config_from_json(io::read_json_file(file), file, check_fits);
}

std::string llama_config_to_json(const LlamaConfig& c) {
  Json j;
  j["architectures"] = Json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.resolved_head_dim();
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  // The transformers 4 spelling: every version of transformers (and llama.cpp's converter) reads it.
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == ops::RopeScaling::Type::llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id >= 0 ? Json(c.bos_token_id) : Json(nullptr);
  if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else
    j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace qtune::models
