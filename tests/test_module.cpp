// Module: names, state dicts, modes, module replacement, flat parameter buffers and dtype casts, on
// a toy tree shaped like a Hugging Face Llama (model.layers.N.*, lm_head).
#include <algorithm>

#include "engine/autograd.h"
#include "engine/module.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tests/testing.h"

using namespace qtune;

namespace {

class Lin : public Module {
 public:
  Tensor weight, bias, running, scratch;
  int mode_changes = 0;
  Lin(int64_t in, int64_t out, double w) : Module("Lin") {
    weight = Tensor::full({out, in}, w);
    bias = Tensor::full({out}, 0.25);
    running = Tensor::zeros({out});
    scratch = Tensor::zeros({2});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
    register_buffer("running", &running);
    register_buffer("scratch", &scratch, /*persistent=*/false);
  }
  Tensor forward(const Tensor& x) override { return ops::linear(x, weight, bias); }

 protected:
  void on_train_mode(bool) override { ++mode_changes; }
};

class Block : public Module {
 public:
  ModulePtr up, down;
  Block(int64_t width, double w) : Module("Block") {
    up = std::make_shared<Lin>(width, 2 * width, w);
    down = std::make_shared<Lin>(2 * width, width, w);
    register_module("up", &up);
    register_module("down", &down);
  }
  Tensor forward(const Tensor& x) override { return (*down)(ops::exp((*up)(x))); }
};

class Inner : public Module {
 public:
  ModulePtr layers;
  Tensor norm_weight, steps;
  explicit Inner(int64_t width) : Module("Inner") {
    auto list = std::make_shared<ModuleList>();
    list->append(std::make_shared<Block>(width, 0.1));
    list->append(std::make_shared<Block>(width, -0.2));
    layers = list;
    norm_weight = Tensor::ones({width});
    steps = Tensor::zeros({1}, DType::i64);
    register_module("layers", &layers);
    register_parameter("norm_weight", &norm_weight);
    register_buffer("steps", &steps);
  }
  Tensor forward(const Tensor& x) override {
    auto& list = static_cast<ModuleList&>(*layers);
    Tensor h = x;
    for (size_t i = 0; i < list.size(); ++i) h = list[i](h);
    return h * norm_weight;
  }
};

class Root : public Module {
 public:
  ModulePtr model, lm_head;
  explicit Root(int64_t width) : Module("Root") {
    model = std::make_shared<Inner>(width);
    lm_head = std::make_shared<Lin>(width, 3, 0.05);
    register_module("model", &model);
    register_module("lm_head", &lm_head);
  }
  Tensor forward(const Tensor& x) override { return (*lm_head)((*model)(x)); }
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& items) {
  std::vector<std::string> out;
  for (auto& [name, t] : items) out.push_back(name);
  return out;
}

Tensor input() { return Tensor::from_vector<float>({0.5f, -1.0f, 0.25f, 2.0f, 0.0f, -0.5f, 1.0f, 1.5f}, {2, 4}); }

}  // namespace

TEST_CASE("HF-style dotted names for parameters, buffers and modules") {
  Root root(4);
  const std::vector<std::string> params = names_of(root.named_parameters());
  const std::vector<std::string> want{"model.norm_weight",
                                      "model.layers.0.up.weight",
                                      "model.layers.0.up.bias",
                                      "model.layers.0.down.weight",
                                      "model.layers.0.down.bias",
                                      "model.layers.1.up.weight",
                                      "model.layers.1.up.bias",
                                      "model.layers.1.down.weight",
                                      "model.layers.1.down.bias",
                                      "lm_head.weight",
                                      "lm_head.bias"};
  CHECK(params == want);
  std::vector<std::string> modules;
  for (auto& [name, m] : root.named_modules()) modules.push_back(name + ":" + m->type_name());
  CHECK(modules == std::vector<std::string>{":Root", "model:Inner", "model.layers:ModuleList", "model.layers.0:Block",
                                            "model.layers.0.up:Lin", "model.layers.0.down:Lin", "model.layers.1:Block",
                                            "model.layers.1.up:Lin", "model.layers.1.down:Lin", "lm_head:Lin"});
  CHECK(root.find_module("model.layers.1.down") == root.named_modules()[8].second);
  CHECK(root.find_module("model.layers.2") == nullptr);
  REQUIRE(root.find_parameter("model.layers.1.up.bias") != nullptr);
  CHECK(root.find_parameter("model.layers.1.up.bias")->is_same(root.named_parameters()[6].second));
  CHECK(root.find_parameter("model.nope.weight") == nullptr);
  CHECK(root.parameters().size() == 11);
  CHECK(names_of(root.named_parameters("", /*recurse=*/false)).empty());

  const StateDict sd = root.state_dict();
  CHECK(sd.count("model.steps") == 1);                // persistent integer buffer
  CHECK(sd.count("model.layers.0.up.running") == 1);  // persistent buffer
  CHECK(sd.count("model.layers.0.up.scratch") == 0);  // non-persistent buffer
  CHECK(sd.size() == 11 + 1 + 5);
  const auto buffers = names_of(root.named_buffers());
  CHECK(std::count(buffers.begin(), buffers.end(), "lm_head.scratch") == 1);
}

TEST_CASE("load_state_dict: strict errors name every bad key; non-strict returns them") {
  Root root(4);
  Root other(4);
  StateDict sd = other.state_dict();
  sd.at("lm_head.bias").fill_(7.0);
  // An f64 source loads into the f32 parameter, converted.
  sd["model.norm_weight"] = Tensor::full({4}, 3.0, DType::f64);
  CHECK(root.load_state_dict(sd).missing.empty());
  CHECK(root.find_parameter("lm_head.bias")->to_vector<float>() == std::vector<float>{7, 7, 7});
  CHECK(root.find_parameter("model.norm_weight")->to_vector<float>() == std::vector<float>(4, 3.0f));
  CHECK(root.find_parameter("model.norm_weight")->dtype() == DType::f32);

  sd.erase("model.layers.1.down.bias");
  sd["model.layers.9.up.weight"] = Tensor::zeros({1});
  sd["lm_head.weight"] = Tensor::zeros({3, 5});
  sd.at("lm_head.bias").fill_(9.0);
  try {
    root.load_state_dict(sd);
    FAIL("strict load_state_dict accepted bad keys");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("model.layers.1.down.bias") != std::string::npos);
    CHECK(msg.find("model.layers.9.up.weight") != std::string::npos);
    CHECK(msg.find("lm_head.weight") != std::string::npos);
    CHECK(msg.find("[3, 5]") != std::string::npos);
  }
  CHECK(root.find_parameter("lm_head.bias")->to_vector<float>() == std::vector<float>{7, 7, 7});  // nothing loaded

  const auto result = root.load_state_dict(sd, /*strict=*/false);
  CHECK(result.missing == std::vector<std::string>{"model.layers.1.down.bias"});
  CHECK(result.unexpected == std::vector<std::string>{"model.layers.9.up.weight"});
  REQUIRE(result.mismatched.size() == 1);
  CHECK(result.mismatched[0].find("lm_head.weight") == 0);
  CHECK(root.find_parameter("lm_head.bias")->to_vector<float>() == std::vector<float>{9, 9, 9});  // the good keys load
}

TEST_CASE("train() and eval() reach every module") {
  Root root(4);
  CHECK(root.is_training());
  root.eval();
  for (auto& [name, m] : root.named_modules()) CHECK_FALSE(m->is_training());
  root.train();
  for (auto& [name, m] : root.named_modules()) CHECK(m->is_training());
  CHECK(static_cast<Lin*>(root.find_module("model.layers.0.up"))->mode_changes == 2);
}

TEST_CASE("replace_module by fully qualified name changes what the parent's forward runs") {
  Root root(4);
  const Tensor before = root(input());
  auto old = root.replace_module("model.layers.1.up", std::make_shared<Lin>(4, 8, 0.3));
  CHECK(old->type_name() == "Lin");
  const Tensor after = root(input());
  CHECK(testing::closeness(after, before, 1e-3, 1e-6) > 1.0);
  // Putting the old one back restores the output exactly.
  root.replace_module("model.layers.1.up", old);
  CHECK(root(input()).to_vector<float>() == before.to_vector<float>());
  // A whole list entry, and a top-level child.
  root.replace_module("model.layers.0", std::make_shared<Block>(4, 0.0));
  CHECK(root.find_parameter("model.layers.0.up.weight")->to_vector<float>()[0] == 0.0f);
  root.replace_module("lm_head", std::make_shared<Lin>(4, 3, 0.0));
  CHECK(root(input()).to_vector<float>() == std::vector<float>(6, 0.25f));
  CHECK_THROWS_AS(root.replace_module("model.layers.7", std::make_shared<Block>(4, 0.0)), Error);
  CHECK_THROWS_AS(root.replace_module("model.nothing.up", std::make_shared<Block>(4, 0.0)), Error);
}

TEST_CASE("flatten_parameters: every parameter is a view of one buffer") {
  Root root(4);
  const Tensor ref_out = root(input());
  std::map<std::string, std::vector<float>> values;
  for (auto& [name, t] : root.state_dict()) values[name] = t.to_vector<float>();
  Tensor flat = root.flatten_parameters();
  int64_t total = 0;
  for (auto& [name, p] : root.named_parameters()) {
    CAPTURE(name);
    CHECK(p.storage() == flat.storage());
    CHECK(p.offset() == total);
    CHECK(p.requires_grad());
    total += p.numel();
  }
  CHECK(flat.numel() == total);
  for (auto& [name, t] : root.state_dict()) CHECK(t.to_vector<float>() == values[name]);  // unchanged
  CHECK(root(input()).to_vector<float>() == ref_out.to_vector<float>());

  // Gradients still reach the parameters.
  ops::sum(root(input())).backward();
  for (auto& [name, p] : root.named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
  }
  // Writes through the buffer are the parameters.
  flat.fill_(0.5);
  for (auto& [name, p] : root.named_parameters()) {
    const auto v = p.to_vector<float>();
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x == 0.5f; }));
  }
}

namespace {
// lm_head shares its weight with the embedding (tie_word_embeddings).
class Tied : public Module {
 public:
  Tensor embed, head, extra;
  Tied() : Module("Tied") {
    embed = Tensor::full({3, 2}, 1.0);
    head = embed;  // the same tensor under a second name
    extra = Tensor::full({2}, 2.0);
    register_parameter("embed_tokens.weight", &embed);
    register_parameter("lm_head.weight", &head);
    register_parameter("extra", &extra);
  }
};
}  // namespace

TEST_CASE("a tied parameter is listed once, flattened once, and kept under both names in state_dict") {
  Tied m;
  CHECK(m.parameters().size() == 2);  // an optimizer must not update the tied weight twice
  CHECK(m.state_dict().size() == 3);
  Tensor flat = m.flatten_parameters();
  CHECK(flat.numel() == 8);
  flat.fill_(4.0);
  CHECK(m.embed.to_vector<float>() == std::vector<float>(6, 4.0f));
  CHECK(m.head.is_same(m.embed));
  CHECK(m.extra.to_vector<float>() == std::vector<float>(2, 4.0f));
}

TEST_CASE("Module::to(DType) casts in place and keeps tensor identity") {
  Root root(4);
  Tensor w = *root.find_parameter("model.layers.0.up.weight");
  Tensor steps = root.state_dict().at("model.steps");
  ops::sum(root(input())).backward();
  REQUIRE(w.grad().defined());
  root.to(DType::bf16);
  CHECK(w.dtype() == DType::bf16);  // the handle taken before sees the cast
  CHECK(w.is_same(*root.find_parameter("model.layers.0.up.weight")));
  CHECK(w.requires_grad());
  CHECK_FALSE(w.grad().defined());                   // a gradient of the old dtype is dropped
  CHECK(w.to_vector<float>()[0] == 0.10009765625f);  // 0.1 rounded to bf16
  CHECK(steps.dtype() == DType::i64);                // integer buffers are left alone
  CHECK(root.state_dict().at("model.layers.0.up.running").dtype() == DType::bf16);
  const Tensor out = root(input().to(DType::bf16));
  CHECK(out.dtype() == DType::bf16);
  ops::sum(out).backward();
  CHECK(w.grad().dtype() == DType::bf16);
}

TEST_CASE("split_name: a dotted module name at its last dot") {
  CHECK(split_name("model.layers.0.mlp.up_proj").parent == "model.layers.0.mlp");
  CHECK(split_name("model.layers.0.mlp.up_proj").leaf == "up_proj");
  CHECK(split_name("lm_head").parent.empty());
  CHECK(split_name("lm_head").leaf == "lm_head");
  CHECK(split_name("").leaf.empty());
}
