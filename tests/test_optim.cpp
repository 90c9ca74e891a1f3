// Optimizers (optim/adamw.h, sgd.h), gradient clipping (optim/clip_grad.h) and the backend kernels under
// them: torch goldens (tests/golden/optim/*.json, written by tools/goldens/gen_optim.py), reduced-precision
// parameters, bit-identical resume, state validation, option errors and gradient accumulation.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "engine/backend.h"
#include "engine/numerics/clip.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "optim/adamw.h"
#include "optim/clip_grad.h"
#include "optim/sgd.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::optim;
using testing::GoldenCase;

namespace {

const GoldenCase& golden(const std::string& file, const std::string& name) {
  static std::map<std::string, std::map<std::string, GoldenCase>> files;
  if (files.count(file) == 0) files[file] = testing::load_golden("optim/" + file);
  const auto it = files[file].find(name);
  REQUIRE_MESSAGE(it != files[file].end(), "golden case '", name, "' is missing from optim/", file);
  return it->second;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  std::vector<uint8_t> out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

#define CHECK_SAME_BYTES(a, b)                                                      \
  do {                                                                              \
    REQUIRE((a).shape() == (b).shape());                                            \
    REQUIRE((a).dtype() == (b).dtype());                                            \
    CHECK_MESSAGE(bytes_of(a) == bytes_of(b), #a " and " #b " differ in some bit"); \
  } while (0)

constexpr size_t kParams = 3;  // per golden case: a matrix, a vector and a row of 37

// name + index; built by appending (GCC 12 flags `const char* + std::string` with a false -Wrestrict).
std::string at(const std::string& name, size_t j) {
  std::string out = name;
  out += std::to_string(j);
  return out;
}

// Replays a golden optimizer case: before each step the lr is set and every parameter gets the stored
// gradient (or none), and after it the parameters and `state_names` are compared with torch's.
// f32 tolerances: parameters and moments within `rtol` of torch (see the callers for why not exact).
void replay(const GoldenCase& c, const std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>& make,
            const std::vector<std::string>& state_names, double rtol, double state_rtol) {
  std::vector<Tensor> params;
  for (size_t j = 0; j < kParams; ++j) params.push_back(c.at(at("p", j) + "_init").to(DType::f32).requires_grad_());
  const std::unique_ptr<Optimizer> opt = make(params);
  const std::vector<double> lrs = c.at("lr").to_vector<double>();
  for (size_t s = 0; s < lrs.size(); ++s) {
    CAPTURE(s);
    opt->set_lr(lrs[s]);
    for (size_t j = 0; j < kParams; ++j) {
      if (c.at(at("has_grad", j)).to_vector<double>()[s] != 0.0)
        params[j].set_grad(c.at(at("grad", j)).select(0, static_cast<int64_t>(s)).to(DType::f32).contiguous());
      else
        params[j].zero_grad();
    }
    opt->step();
    CHECK(opt->step_count() == static_cast<int64_t>(s) + 1);
    const OptimizerState st = opt->state();
    for (size_t j = 0; j < kParams; ++j) {
      CAPTURE(j);
      const Tensor expected = c.at(at("p", j)).select(0, static_cast<int64_t>(s));
      QTUNE_CHECK_CLOSE(params[j].to(DType::f64), expected, rtol, 0.0);
      for (const std::string& name : state_names) {
        CAPTURE(name);
        const auto it = st.tensors.find(at("state.", j) + "." + name);
        const Tensor want = c.at(at(name, j)).select(0, static_cast<int64_t>(s));
        if (it == st.tensors.end()) {
          // No state yet: this parameter has not had a gradient (torch's state reads as zeros here).
          CHECK(c.at(at("has_grad", j)).to_vector<double>()[0] == 0.0);
          CHECK(ops::sum(ops::square(want)).item() == 0.0);
          continue;
        }
        QTUNE_CHECK_CLOSE(it->second.to(DType::f64), want, state_rtol, 0.0);
      }
    }
  }
}

AdamWOptions adamw_options(const GoldenCase& c) {
  const std::vector<double> h = c.at("hparams").to_vector<double>();
  return {.lr = 0.0, .beta1 = h[0], .beta2 = h[1], .eps = h[2], .weight_decay = h[3]};
}

SGDOptions sgd_options(const GoldenCase& c) {
  const std::vector<double> h = c.at("hparams").to_vector<double>();
  return {.lr = 0.0, .momentum = h[0], .dampening = h[1], .nesterov = h[2] != 0.0, .weight_decay = h[3]};
}

Tensor random_f32(const Shape& shape, uint64_t seed, double scale = 1.0) {
  return testing::random_f64(shape, seed, -scale, scale).to(DType::f32);
}

}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW step by step") {
  // The moments repeat torch's operations and match to the bit (zero tolerance). torch's f32 sqrt (MKL)
  // is off by an ulp on some inputs where ours is correctly rounded, so a parameter drifts from torch's
  // by an ulp of an update now and then: measured at most 1.5e-7 relative after 6 steps.
  for (const std::string name : {"default_betas_wd", "no_weight_decay", "small_beta1_eps"}) {
    CAPTURE(name);
    const GoldenCase& c = golden("adamw.json", name);
    replay(
        c, [&](std::vector<Tensor> p) { return std::make_unique<AdamW>(std::move(p), adamw_options(c)); },
        {"exp_avg", "exp_avg_sq"}, 5e-7, 0.0);
  }
}

TEST_CASE("SGD matches torch.optim.SGD step by step, to the bit") {
  // Every SGD operation is a multiply or a fused multiply-add as in torch's kernels: no tolerance.
  for (const std::string name : {"plain", "momentum", "dampening_weight_decay", "nesterov", "weight_decay"}) {
    CAPTURE(name);
    const GoldenCase& c = golden("sgd.json", name);
    const SGDOptions o = sgd_options(c);
    replay(
        c, [&](std::vector<Tensor> p) { return std::make_unique<SGD>(std::move(p), o); },
        o.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}, 0.0, 0.0);
  }
}

TEST_CASE("parameters without a gradient are skipped: unchanged, no state, own update count") {
  const Tensor a = random_f32({3, 4}, 1).requires_grad_(), b = random_f32({5}, 2).requires_grad_();
  const Tensor b_before = b.clone();
  AdamW opt({a, b}, {.lr = 0.1});
  a.set_grad(random_f32({3, 4}, 3));
  opt.step();
  opt.step();
  CHECK_SAME_BYTES(b, b_before);
  OptimizerState st = opt.state();
  CHECK(st.tensors.count("state.0.exp_avg") == 1);
  CHECK(st.tensors.count("state.1.exp_avg") == 0);
  CHECK(st.scalars.at("state.0.step") == 2.0);
  CHECK(st.scalars.at("step") == 2.0);
  // b's first update uses bias corrections of step 1 although the optimizer is at step 3: one step of
  // AdamW from zero moments moves every element by lr (up to eps), whatever the gradient's size.
  b.set_grad(random_f32({5}, 4, 1e-3));
  opt.step();
  st = opt.state();
  CHECK(st.scalars.at("state.1.step") == 1.0);
  const std::vector<float> before = b_before.to_vector<float>(), after = b.to_vector<float>();
  // (With the bias corrections of step 3 the move would be about 0.064.)
  for (size_t i = 0; i < after.size(); ++i) {
    const float moved = std::fabs(after[i] - before[i] * (1.0f - 0.1f * 0.01f));
    CHECK(moved > 0.09f);
    CHECK(moved < 0.1001f);
  }

  SGD sgd({a, b}, {.lr = 0.1, .momentum = 0.9});
  a.zero_grad();
  const Tensor a_before = a.clone();
  sgd.step();
  CHECK_SAME_BYTES(a, a_before);
  CHECK(sgd.state().tensors.count("state.0.momentum_buffer") == 0);
  CHECK(sgd.state().tensors.count("state.1.momentum_buffer") == 1);
  sgd.zero_grad();
  CHECK(!b.grad().defined());
}

TEST_CASE("bf16 and f16 parameters are updated in f32 and rounded once") {
  // Each step runs the same update on an f32 copy (same f32 state, the gradient converted exactly):
  // the reduced-precision parameter must be that result rounded, and the f32 state identical.
  for (DType dt : {DType::bf16, DType::f16}) {
    for (bool adam : {true, false}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(adam);
      const Tensor low = random_f32({9, 37}, 5).to(dt).requires_grad_();
      const Tensor ref = low.detach().to(DType::f32).requires_grad_();
      std::unique_ptr<Optimizer> a, b;
      if (adam) {
        a = std::make_unique<AdamW>(std::vector<Tensor>{low}, AdamWOptions{.lr = 3e-2, .weight_decay = 0.1});
        b = std::make_unique<AdamW>(std::vector<Tensor>{ref}, AdamWOptions{.lr = 3e-2, .weight_decay = 0.1});
      } else {
        const SGDOptions o{.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01};
        a = std::make_unique<SGD>(std::vector<Tensor>{low}, o);
        b = std::make_unique<SGD>(std::vector<Tensor>{ref}, o);
      }
      for (int s = 0; s < 4; ++s) {
        const Tensor g = random_f32({9, 37}, 10 + static_cast<uint64_t>(s)).to(dt);
        low.set_grad(g);
        ref.copy_(low);
        ref.set_grad(g.to(DType::f32));
        if (s > 0) b->load_state(a->state());
        a->step();
        b->step();
        CHECK_SAME_BYTES(low, ref.to(dt));
        for (const auto& [key, t] : a->state().tensors) CHECK_SAME_BYTES(t, b->state().tensors.at(key));
      }
      // The parameters did move: the comparisons above are not between two untouched copies.
      CHECK(low.to(DType::f32).to_vector<float>() != random_f32({9, 37}, 5).to(dt).to(DType::f32).to_vector<float>());
    }
  }
}

TEST_CASE("f32 masters: a bf16/f16 parameter is an f32 run of the same gradients, rounded once") {
  for (DType dt : {DType::bf16, DType::f16})
    for (bool adam : {true, false}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(adam);
      auto make = [adam](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
        if (adam) return std::make_unique<AdamW>(std::move(p), AdamWOptions{.lr = 3e-2, .weight_decay = 0.1});
        return std::make_unique<SGD>(std::move(p), SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01});
      };
      const Tensor low = random_f32({9, 37}, 5).to(dt).requires_grad_();
      const Tensor ref = low.detach().to(DType::f32).requires_grad_();
      std::unique_ptr<Optimizer> a = make({low}), b = make({ref});
      a->keep_f32_masters();
      CHECK(a->keeps_f32_masters());
      for (int s = 0; s < 5; ++s) {
        const Tensor g = random_f32({9, 37}, 10 + static_cast<uint64_t>(s)).to(dt);
        low.set_grad(g);
        ref.set_grad(g.to(DType::f32));
        a->step();
        b->step();
        const OptimizerState sa = a->state(), sb = b->state();
        CHECK_SAME_BYTES(sa.tensors.at("state.0.master"), ref);
        CHECK_SAME_BYTES(low, ref.to(dt));
        for (const auto& [key, t] : sb.tensors) CHECK_SAME_BYTES(sa.tensors.at(key), t);
      }
      CHECK_THROWS_WITH_AS(a->keep_f32_masters(), doctest::Contains("from the first step"), Error);
    }
}

TEST_CASE("adamw_step_master: the CPU's one pass equals widening, adamw_step and rounding, bit for bit") {
  Backend& cpu = backend_for(Device::cpu());
  // An odd size over several parallel chunks; large gradients, tiny ones and zeros among them.
  const int64_t n = 100003;
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dt));
    const Tensor start = random_f32({n}, 31);
    Tensor fused_p = start.to(dt), plain_p = start.to(dt);
    Tensor fused_w = start.clone(), plain_w = start.clone();
    Tensor fused_m = Tensor::zeros({n}), plain_m = Tensor::zeros({n});
    Tensor fused_v = Tensor::zeros({n}), plain_v = Tensor::zeros({n});
    for (int64_t step = 1; step <= 3; ++step) {
      const Tensor g = (random_f32({n}, 40 + static_cast<uint64_t>(step)) * (step == 2 ? 1e-6 : 3.0)).to(dt);
      cpu.adamw_step_master(fused_p, fused_w, g, fused_m, fused_v, 1e-2, 0.9, 0.99, 1e-8, 0.1, step);
      cpu.Backend::adamw_step_master(plain_p, plain_w, g, plain_m, plain_v, 1e-2, 0.9, 0.99, 1e-8, 0.1, step);
      CHECK_SAME_BYTES(fused_w, plain_w);
      CHECK_SAME_BYTES(fused_p, plain_p);
      CHECK_SAME_BYTES(fused_m, plain_m);
      CHECK_SAME_BYTES(fused_v, plain_v);
    }
    CHECK(bytes_of(fused_p) != bytes_of(start.to(dt)));  // the updates moved the parameter
  }
  const Tensor f = random_f32({8}, 1), w = f.clone(), m = Tensor::zeros({8}), v = Tensor::zeros({8});
  CHECK_THROWS_WITH_AS(cpu.adamw_step_master(f, w, f, m, v, 1e-2, 0.9, 0.99, 1e-8, 0.0, 1),
                       doctest::Contains("needs a bf16 or f16 param"), Error);
}

TEST_CASE("f32 masters keep updates smaller than a bf16 step, which a bf16 parameter alone loses") {
  // lr 1e-4 moves a weight of 1 by about 1e-4 per AdamW step, under half of bf16's spacing there (2^-7).
  auto run = [](bool masters) {
    const Tensor w = Tensor::full({64}, 1.0, DType::bf16).requires_grad_();
    AdamW opt({w}, AdamWOptions{.lr = 1e-4, .weight_decay = 0.0});
    if (masters) opt.keep_f32_masters();
    for (int s = 0; s < 100; ++s) {
      w.set_grad(Tensor::full({64}, 1.0, DType::bf16));
      opt.step();
    }
    return w.to(DType::f32).to_vector<float>().front();
  };
  CHECK(run(false) == 1.0f);
  const float with_masters = run(true);
  CHECK(with_masters < 0.995f);  // 100 steps of about 1e-4: 0.99 in f32, the nearest bf16 0.98828125
  CHECK(with_masters > 0.985f);
}

TEST_CASE("f32 masters are state: saved, restored bit-identically, refused where none are kept") {
  const std::vector<Shape> shapes = {{4, 5}, {33}};
  auto params_of = [&](uint64_t seed) {
    std::vector<Tensor> ps;
    for (size_t j = 0; j < shapes.size(); ++j)
      ps.push_back(random_f32(shapes[j], seed + j).to(j == 0 ? DType::bf16 : DType::f32).requires_grad_());
    return ps;  // a bf16 parameter (with a master) and an f32 one (none)
  };
  auto set_grads = [&](std::vector<Tensor>& ps, int s) {
    for (size_t j = 0; j < ps.size(); ++j)
      ps[j].set_grad(random_f32(shapes[j], 100 + 10 * static_cast<uint64_t>(s) + j).to(ps[j].dtype()));
  };
  std::vector<Tensor> params = params_of(20);
  AdamW first(params, AdamWOptions{.lr = 1e-3});
  first.keep_f32_masters();
  for (int s = 0; s < 3; ++s) set_grads(params, s), first.step();
  OptimizerState saved = first.state();
  CHECK(saved.tensors.count("state.0.master") == 1);
  CHECK(saved.tensors.count("state.1.master") == 0);
  for (auto& [key, t] : saved.tensors) t = t.clone();
  std::vector<Tensor> resumed_params;
  for (const Tensor& p : params) resumed_params.push_back(p.detach().clone().requires_grad_());
  for (int s = 3; s < 6; ++s) set_grads(params, s), first.step();

  AdamW resumed(resumed_params, AdamWOptions{.lr = 1e-3});
  resumed.keep_f32_masters();
  resumed.load_state(saved);
  for (int s = 3; s < 6; ++s) set_grads(resumed_params, s), resumed.step();
  for (size_t j = 0; j < params.size(); ++j) CHECK_SAME_BYTES(resumed_params[j], params[j]);
  CHECK_SAME_BYTES(resumed.state().tensors.at("state.0.master"), first.state().tensors.at("state.0.master"));

  // Masters saved by a run that kept them cannot go into one that does not.
  AdamW plain(params_of(20), AdamWOptions{.lr = 1e-3});
  CHECK_THROWS_WITH_AS(plain.load_state(saved), doctest::Contains("state.0.master' is an f32 master copy"), Error);
  SGD sgd(params_of(20), SGDOptions{.lr = 1e-3});
  sgd.keep_f32_masters();
  OptimizerState sgd_state{.tensors = {{"state.0.master", saved.tensors.at("state.0.master")}},
                           .scalars = {{"step", 3}, {"lr", 1e-3}}};
  sgd.load_state(sgd_state);  // momentum 0 takes a state with masters only
}

TEST_CASE("a restored optimizer continues bit-identically") {
  for (bool adam : {true, false}) {
    CAPTURE(adam);
    auto make = [adam](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
      if (adam) return std::make_unique<AdamW>(std::move(p), AdamWOptions{.lr = 1e-2});
      return std::make_unique<SGD>(std::move(p), SGDOptions{.lr = 1e-2, .momentum = 0.9, .dampening = 0.1});
    };
    const std::vector<Shape> shapes = {{4, 5}, {33}, {2, 3}};
    std::vector<Tensor> params;
    for (size_t j = 0; j < shapes.size(); ++j) params.push_back(random_f32(shapes[j], 20 + j).requires_grad_());
    // Gradients for step s; parameter 2 gets its first one only after the save.
    auto set_grads = [&](std::vector<Tensor>& ps, int s) {
      for (size_t j = 0; j < ps.size(); ++j) {
        if (j == 2 && s < 3)
          ps[j].zero_grad();
        else
          ps[j].set_grad(random_f32(shapes[j], 100 + 10 * static_cast<uint64_t>(s) + j));
      }
    };
    std::unique_ptr<Optimizer> first = make(params);
    for (int s = 0; s < 3; ++s) {
      first->set_lr(1e-2 * (s + 1));
      set_grads(params, s);
      first->step();
    }
    // What a checkpoint holds: copies of the parameters and of the state.
    std::vector<Tensor> saved_params;
    for (const Tensor& p : params) saved_params.push_back(p.detach().clone());
    OptimizerState saved = first->state();
    for (auto& [key, t] : saved.tensors) t = t.clone();
    CHECK(saved.tensors.count("state.2." + std::string(adam ? "exp_avg" : "momentum_buffer")) == 0);

    for (int s = 3; s < 6; ++s) {
      first->set_lr(1e-2 * (s + 1));
      set_grads(params, s);
      first->step();
    }
    std::vector<Tensor> resumed_params;
    for (const Tensor& p : saved_params) resumed_params.push_back(p.detach().clone().requires_grad_());
    std::unique_ptr<Optimizer> resumed = make(resumed_params);
    resumed->load_state(saved);
    CHECK(resumed->step_count() == 3);
    CHECK(resumed->lr() == 1e-2 * 3);
    for (int s = 3; s < 6; ++s) {
      resumed->set_lr(1e-2 * (s + 1));
      set_grads(resumed_params, s);
      resumed->step();
    }
    for (size_t j = 0; j < params.size(); ++j) CHECK_SAME_BYTES(resumed_params[j], params[j]);
    const OptimizerState a = first->state(), b = resumed->state();
    CHECK(a.scalars == b.scalars);
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (const auto& [key, t] : a.tensors) CHECK_SAME_BYTES(b.tensors.at(key), t);
  }
}

TEST_CASE("load_state rejects wrong names, shapes and dtypes, and changes nothing then") {
  const Tensor w = random_f32({3, 4}, 30).requires_grad_(), v = random_f32({6}, 31).requires_grad_();
  AdamW opt({w, v}, {.lr = 1e-2});
  w.set_grad(random_f32({3, 4}, 32));
  opt.step();
  const OptimizerState good = opt.state();
  auto rejects = [&](const OptimizerState& s, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(opt.load_state(s), doctest::Contains(message.c_str()), Error);
  };
  OptimizerState s = good;
  s.tensors["state.0.momentum_buffer"] = Tensor::zeros({3, 4});
  rejects(s, "unknown tensor 'state.0.momentum_buffer'");
  s = good;
  s.tensors["state.5.exp_avg"] = Tensor::zeros({3, 4});
  rejects(s, "'state.5.exp_avg' names parameter 5 of 2");
  s = good;
  s.tensors["exp_avg"] = Tensor::zeros({3, 4});
  rejects(s, "unknown tensor 'exp_avg'");
  s = good;
  s.tensors["state.0.exp_avg"] = Tensor::zeros({4, 3});
  rejects(s, "'state.0.exp_avg' is f32 [4, 3], expected f32 [3, 4]");
  s = good;
  s.tensors["state.0.exp_avg_sq"] = Tensor::zeros({3, 4}, DType::bf16);
  rejects(s, "'state.0.exp_avg_sq' is bf16 [3, 4], expected f32 [3, 4]");
  s = good;
  s.tensors.erase("state.0.exp_avg_sq");
  rejects(s, "parameter 0 has 'state.0.exp_avg' but not 'state.0.exp_avg_sq'");
  s = good;
  s.scalars.erase("step");
  rejects(s, "scalar 'step' is missing");
  s = good;
  s.scalars["state.1.step"] = 4;
  rejects(s, "parameter 1 has 'state.1.step' but not 'state.1.exp_avg'");
  s = good;
  s.scalars["beta1"] = 0.9;
  rejects(s, "unknown scalar 'beta1'");
  // SGD state is not AdamW state, and the reverse.
  SGD sgd({w, v}, {.lr = 0.1, .momentum = 0.9});
  CHECK_THROWS_WITH_AS(sgd.load_state(good), doctest::Contains("unknown tensor 'state.0.exp_avg'"), Error);
  // Nothing changed: the optimizer still continues from its own state.
  const OptimizerState after = opt.state();
  CHECK(after.scalars == good.scalars);
  CHECK(after.tensors.size() == good.tensors.size());
  for (const auto& [key, t] : good.tensors) CHECK(after.tensors.at(key).is_same(t));
}

TEST_CASE("invalid options and parameters fail with clear errors") {
  const Tensor p = random_f32({4}, 40).requires_grad_();
  auto fails = [](auto make, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(make(), doctest::Contains(message.c_str()), Error);
  };
  fails([&] { AdamW({p}, {.lr = -1e-3}); }, "lr must be a finite number >= 0, got -0.001");
  fails([&] { AdamW({p}, {.beta1 = 1.0}); }, "beta1 must be in [0, 1), got 1");
  fails([&] { AdamW({p}, {.beta2 = -0.1}); }, "beta2 must be in [0, 1), got -0.1");
  fails([&] { AdamW({p}, {.beta2 = NAN}); }, "beta2 must be in [0, 1)");
  fails([&] { AdamW({p}, {.eps = -1.0}); }, "eps must be a finite number >= 0");
  fails([&] { AdamW({p}, {.weight_decay = -0.1}); }, "weight_decay must be a finite number >= 0");
  fails([&] { SGD({p}, {.lr = -0.1}); }, "lr must be a finite number >= 0");
  fails([&] { SGD({p}, {.nesterov = true}); }, "nesterov needs momentum > 0 and dampening 0, got momentum 0");
  fails([&] { SGD({p}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); }, "and dampening 0.1");
  fails([&] { SGD({p}, {.momentum = -0.9}); }, "momentum must be a finite number >= 0");
  fails([&] { SGD({p, p}, {}); }, "parameter 1 [4] appears more than once");
  fails([&] { SGD({random_f32({4}, 41).to(DType::f64)}, {}); }, "has dtype f64; optimizers update f32, bf16 or f16");
  fails([&] { SGD({random_f32({3, 4}, 42).transpose(0, 1)}, {}); }, "parameter 0 [4, 3] is not contiguous");
  fails([&] { SGD({Tensor()}, {}); }, "parameter 0 is an undefined tensor");
  // A gradient that does not match its parameter is caught by the kernel, naming both.
  SGD sgd({p}, {.lr = 0.1});
  p.set_grad(random_f32({4}, 43).to(DType::bf16));
  CHECK_THROWS_WITH_AS(sgd.step(),
                       doctest::Contains("sgd_step: gradient bf16 [4] does not match the parameter f32 [4]"), Error);
}

TEST_CASE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_") {
  // torch sums per-tensor f32 norms; we sum f32 block sums of squares in f64: the norms agree to a few
  // f32 ulps, and so do the clipping factors and the clipped gradients.
  for (const std::string name : {"clipped", "not_clipped"}) {
    CAPTURE(name);
    const GoldenCase& c = golden("clip_grad.json", name);
    std::vector<Tensor> params;
    for (size_t j = 0; j < 3; ++j) {
      params.push_back(Tensor::zeros(c.at(at("grad", j)).shape()).requires_grad_());
      params.back().set_grad(c.at(at("grad", j)).to(DType::f32));
    }
    // A parameter without a gradient is skipped.
    params.push_back(Tensor::zeros({7}).requires_grad_());
    const double norm = clip_grad_norm(params, c.at("max_norm").item());
    CHECK(norm == doctest::Approx(c.at("total_norm").item()).epsilon(1e-6));
    for (size_t j = 0; j < 3; ++j)
      QTUNE_CHECK_CLOSE(params[j].grad().to(DType::f64), c.at(at("clipped", j)), 1e-6, 0.0);
    CHECK(!params[3].grad().defined());
    if (name == "not_clipped") {
      // Below the limit the gradients are untouched, to the bit.
      for (size_t j = 0; j < 3; ++j) CHECK_SAME_BYTES(params[j].grad(), c.at(at("grad", j)).to(DType::f32));
    }
  }
}

TEST_CASE("clip_grad_norm: max_norm <= 0 only measures; a non-finite norm scales nothing") {
  const Tensor a = Tensor::zeros({3}).requires_grad_(), b = Tensor::zeros({2, 2}, DType::bf16).requires_grad_();
  a.set_grad(Tensor::from_vector(std::vector<float>{3.0f, 0.0f, 4.0f}, {3}));
  b.set_grad(Tensor::full({2, 2}, 6.0, DType::bf16));
  CHECK(clip_grad_norm({a, b}, 0.0) == doctest::Approx(13.0).epsilon(1e-12));  // sqrt(9 + 16 + 4 * 36)
  CHECK(a.grad().to_vector<float>() == std::vector<float>{3.0f, 0.0f, 4.0f});
  CHECK(clip_grad_norm({a, b}, 1.3) == doctest::Approx(13.0).epsilon(1e-12));
  CHECK(a.grad().to_vector<float>()[2] == doctest::Approx(0.4).epsilon(1e-6));
  CHECK(b.grad().to_vector<float>()[0] == doctest::Approx(0.6).epsilon(1e-2));  // bf16
  a.set_grad(Tensor::from_vector(std::vector<float>{INFINITY, 1.0f, 2.0f}, {3}));
  CHECK(std::isinf(clip_grad_norm({a}, 1.0)));
  CHECK(a.grad().to_vector<float>()[1] == 1.0f);
  CHECK(clip_grad_norm({}, 1.0) == 0.0);
  scale_grads({b}, 0.5);
  CHECK(b.grad().to_vector<float>()[0] == doctest::Approx(0.3).epsilon(1e-2));
}

TEST_CASE("squared_norm: blocked f32 sums, the same bits whatever the thread count") {
  Backend& cpu = backend_for(Device::cpu());
  // Several blocks and a ragged tail.
  const Tensor x64 = testing::random_f64({70001}, 50, -2.0, 2.0);
  const Tensor x = x64.to(DType::f32), out = Tensor::empty({1}, DType::f64);
  double exact = 0.0, exact64 = 0.0;
  for (float v : x.to_vector<float>()) exact += static_cast<double>(v) * v;
  for (double v : x64.to_vector<double>()) exact64 += v * v;
  cpu.squared_norm(x, out);
  const double with_threads = out.item();
  CHECK(with_threads == doctest::Approx(exact).epsilon(1e-6));
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu.squared_norm(x, out);
  omp_set_num_threads(threads);
  CHECK(out.item() == with_threads);
#endif
  cpu.squared_norm(x64, out);
  CHECK(out.item() == doctest::Approx(exact64).epsilon(1e-12));
  cpu.squared_norm(x.to(DType::bf16), out);
  CHECK(out.item() == doctest::Approx(exact).epsilon(1e-2));
  cpu.squared_norm(Tensor::empty({0}), out);
  CHECK(out.item() == 0.0);
  CHECK_THROWS_WITH_AS(cpu.squared_norm(x, Tensor::empty({1})), doctest::Contains("one f64 element"), Error);
}

TEST_CASE("squared_norm_blocks: each block's sum, whole blocks of a piece equal the tensor's") {
  Backend& cpu = backend_for(Device::cpu());
  constexpr int64_t B = numerics::kSquaredNormBlock;
  const Tensor x = testing::random_f64({2 * B + 123}, 51, -2.0, 2.0).to(DType::f32);
  const Tensor blocks = Tensor::empty({3}, DType::f64), out = Tensor::empty({1}, DType::f64);
  cpu.squared_norm_blocks(x, blocks);
  const std::vector<float> v = x.to_vector<float>();
  const std::vector<double> b = blocks.to_vector<double>();
  double in_order = 0.0;
  for (int64_t k = 0; k < 3; ++k) {
    double exact = 0.0;  // an independent f64 sum of the block
    for (int64_t i = k * B; i < std::min<int64_t>((k + 1) * B, x.numel()); ++i)
      exact += static_cast<double>(v[static_cast<size_t>(i)]) * v[static_cast<size_t>(i)];
    CHECK(b[static_cast<size_t>(k)] == doctest::Approx(exact).epsilon(1e-6));
    in_order += b[static_cast<size_t>(k)];
  }
  cpu.squared_norm(x, out);
  CHECK(out.item() == in_order);  // squared_norm is the blocks added in order, bit for bit
  // A piece starting on a block boundary (an FSDP shard) has the same block sums.
  const Tensor piece_blocks = Tensor::empty({2}, DType::f64);
  cpu.squared_norm_blocks(x.narrow(0, B, x.numel() - B).contiguous(), piece_blocks);
  CHECK(piece_blocks.to_vector<double>() == std::vector<double>{b[1], b[2]});
  CHECK_THROWS_WITH_AS(cpu.squared_norm_blocks(x, Tensor::empty({2}, DType::f64)),
                       doctest::Contains("out must be 3 f64 elements for 32891 elements of x"), Error);
}

TEST_CASE("gradient accumulation: k micro-batches with loss / k give one k-times batch's gradients") {
  // f64 so that the only difference is summation order. Gradients accumulate into .grad across
  // backward() calls (engine behaviour, checked here): no explicit buffer is needed.
  constexpr int64_t k = 4, micro = 3, in = 5, classes = 7;
  const Tensor x = testing::random_f64({k * micro, in}, 60, -2.0, 2.0);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < k * micro; ++i) labels.push_back((i * 5 + 3) % classes);
  const Tensor targets = Tensor::from_vector(labels, {k * micro});
  const Tensor w_init = testing::random_f64({classes, in}, 61), b_init = testing::random_f64({classes}, 62);

  const Tensor w_big = w_init.clone().requires_grad_(), b_big = b_init.clone().requires_grad_();
  ops::cross_entropy(ops::linear(x, w_big, b_big), targets).backward();

  // Scaling the loss by 1/k ...
  const Tensor w = w_init.clone().requires_grad_(), b = b_init.clone().requires_grad_();
  // ... or summing plain micro-batch losses and scaling the gradients afterwards (scale_grads).
  const Tensor w2 = w_init.clone().requires_grad_(), b2 = b_init.clone().requires_grad_();
  for (int64_t i = 0; i < k; ++i) {
    const Tensor xi = x.narrow(0, i * micro, micro), ti = targets.narrow(0, i * micro, micro);
    ops::scale(ops::cross_entropy(ops::linear(xi, w, b), ti), 1.0 / k).backward();
    ops::cross_entropy(ops::linear(xi, w2, b2), ti).backward();
  }
  scale_grads({w2, b2}, 1.0 / k);
  QTUNE_CHECK_CLOSE(w.grad(), w_big.grad(), 1e-12, 1e-15);
  QTUNE_CHECK_CLOSE(b.grad(), b_big.grad(), 1e-12, 1e-15);
  QTUNE_CHECK_CLOSE(w2.grad(), w_big.grad(), 1e-12, 1e-15);
  QTUNE_CHECK_CLOSE(b2.grad(), b_big.grad(), 1e-12, 1e-15);
  // One micro-batch alone is not the answer (the test can fail).
  const Tensor w1 = w_init.clone().requires_grad_();
  ops::cross_entropy(ops::linear(x.narrow(0, 0, micro), w1, b_init), targets.narrow(0, 0, micro)).backward();
  CHECK(testing::closeness(w1.grad(), w_big.grad(), 1e-6, 1e-9) > 1.0);
}
