#include "models/pending_linear.h"

#include "engine/check.h"

namespace qtune::models {

Tensor PendingLinear::forward(const Tensor& x) {
  QTUNE_FAIL("a ", out_features_, " x ", in_features_, " projection was never loaded (input ", shape_str(x.shape()),
             "): a model built with LlamaOptions::defer_projections needs a loader to fill every projection");
}

}  // namespace qtune::models
