#include "engine/checkpoint.h"

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/rng.h"

namespace qtune {

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  const Generator rng_before = default_generator();
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = fn(inputs);
  }
  if (!autograd::grad_enabled()) return outputs;

  // The outputs were computed without history; give them one node whose backward recomputes.
  std::vector<Tensor> saved;
  for (const Tensor& in : inputs) saved.push_back(in.defined() ? in.detach() : Tensor());
  std::vector<bool> input_requires_grad;
  for (const Tensor& in : inputs) input_requires_grad.push_back(in.defined() && in.requires_grad());

  std::vector<Tensor> results;
  for (const Tensor& out : outputs) results.push_back(out.detach());
  autograd::record("checkpoint", inputs, results,
                   [fn, saved, input_requires_grad, rng_before](const std::vector<Tensor>& grad_outputs) {
                     std::vector<Tensor> replay_inputs;
                     for (size_t i = 0; i < saved.size(); ++i) {
                       Tensor t = saved[i].defined() ? saved[i].detach() : Tensor();
                       if (t.defined() && input_requires_grad[i]) t.requires_grad_(true);
                       replay_inputs.push_back(t);
                     }
                     Generator& gen = default_generator();
                     const Generator rng_now = gen;
                     gen = rng_before;
                     const uint64_t first_replayed_node = autograd::next_sequence_nr();
                     std::vector<Tensor> replayed;
                     {
                       EnableGradGuard grad_on;
                       replayed = fn(replay_inputs);
                     }
                     gen = rng_now;
                     QTUNE_CHECK(replayed.size() == grad_outputs.size(), "checkpoint: recomputation returned ",
                                 replayed.size(), " outputs, the first run ", grad_outputs.size());
                     std::vector<Tensor> roots, grads;
                     for (size_t i = 0; i < replayed.size(); ++i) {
                       if (!replayed[i].requires_grad()) continue;
                       roots.push_back(replayed[i]);
                       grads.push_back(grad_outputs[i]);
                     }
                     try {
                       if (!roots.empty()) autograd::backward_releasing_from(roots, grads, first_replayed_node);
                     } catch (const Error& e) {
                       // The usual cause: fn captured a non-leaf tensor whose graph the outer pass already freed.
                       QTUNE_FAIL(
                           "checkpoint: backward through the recomputed function failed: ", e.what(),
                           ". A tensor that requires grad, is computed outside the checkpointed function and is also "
                           "used outside it must be passed in `inputs`, not captured");
                     }
                     std::vector<Tensor> grad_inputs;
                     for (const Tensor& t : replay_inputs) grad_inputs.push_back(t.defined() ? t.grad() : Tensor());
                     return grad_inputs;
                   });
  return results;
}

}  // namespace qtune
