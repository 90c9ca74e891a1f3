// quant::swap_modules: the shared walk of module passes.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/module.h"
#include "ops/nn/linear.h"
#include "quant/module_swap.h"

using namespace qtune;

namespace {

// A module with a child, standing in for a wrapper a pass builds (LoRA around its base, ...).
class Wrapper : public Module {
 public:
  explicit Wrapper(ModulePtr inner) : Module("Wrapper"), inner_(std::move(inner)) { register_module("inner", &inner_); }
  Tensor forward(const Tensor& x) override { return inner_->forward(x); }

 private:
  ModulePtr inner_;
};

class Block : public Module {
 public:
  Block() : Module("Block") {
    proj = std::make_shared<nn::Linear>(4, 4);
    nested = std::make_shared<Wrapper>(std::make_shared<nn::Linear>(4, 2));
    register_module("proj", &proj);
    register_module("nested", &nested);
  }
  ModulePtr proj, nested;
};

std::shared_ptr<ModuleList> two_blocks() {
  auto list = std::make_shared<ModuleList>();
  list->append(std::make_shared<Block>());
  list->append(std::make_shared<Block>());
  return list;
}

bool is_linear(const Module& m, std::string_view) { return m.type_name() == "Linear"; }

}  // namespace

TEST_CASE("swap_modules replaces every selected module in its parent's slot") {
  auto root = two_blocks();
  std::vector<std::string> seen;
  const int64_t n = quant::swap_modules(*root, is_linear, [&](Module& m, std::string_view fqn) -> ModulePtr {
    seen.emplace_back(fqn);
    auto& linear = dynamic_cast<nn::Linear&>(m);
    return std::make_shared<nn::Linear>(linear.in_features(), linear.out_features() + 1);
  });
  CHECK(n == 4);
  CHECK(seen == std::vector<std::string>{"0.proj", "0.nested.inner", "1.proj", "1.nested.inner"});
  // The blocks' members now hold the replacements, so their forward code reads them.
  auto& block = dynamic_cast<Block&>((*root)[0]);
  CHECK(dynamic_cast<nn::Linear&>(*block.proj).out_features() == 5);
  CHECK(root->find_parameter("1.nested.inner.weight")->shape() == Shape{3, 4});
}

TEST_CASE("swap_modules skips what the factory declines, and the subtree of what it replaced") {
  auto root = two_blocks();
  std::vector<std::string> visited;
  const auto any = [](const Module&, std::string_view) { return true; };
  const int64_t n = quant::swap_modules(*root, any, [&](Module& m, std::string_view fqn) -> ModulePtr {
    visited.emplace_back(fqn);
    // Wrap each Wrapper again; decline everything else.
    if (m.type_name() != "Wrapper") return nullptr;
    return std::make_shared<Wrapper>(std::make_shared<nn::Linear>(4, 3));
  });
  CHECK(n == 2);
  // "0.nested.inner" was below a replaced module: never offered to the factory.
  CHECK(visited == std::vector<std::string>{"0", "0.proj", "0.nested", "1", "1.proj", "1.nested"});
  CHECK(root->find_parameter("0.nested.inner.weight")->shape() == Shape{3, 4});
  CHECK(quant::swap_modules(
            *root, [](const Module&, std::string_view) { return false; },
            [](Module&, std::string_view) -> ModulePtr { return nullptr; }) == 0);
}
