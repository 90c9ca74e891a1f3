#pragma once
// A decoder projection not loaded yet: the slot a quantizing loader fills with the real module, so that no
// dense weight is ever allocated for it (LlamaOptions::defer_projections).
#include <cstdint>

#include "engine/module.h"

namespace qtune::models {

class PendingLinear : public Module {
 public:
  PendingLinear(int64_t in_features, int64_t out_features)
      : Module("PendingLinear"), in_features_(in_features), out_features_(out_features) {}

  // Always throws: a model with pending projections has not been loaded.
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
};

}  // namespace qtune::models
