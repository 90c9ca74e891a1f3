// dist::NcclCommunicator on GPU ranks: here the ranks are threads of one process, one GPU each (under the CUDA
// simulator, QTUNE_SIM_DEVICES=4 gives four). Every collective's result on every rank, several in flight, bad
// calls refused, the call check, and a rank that never arrives: the others fail naming the collective. FSDP on
// those ranks: a step over N GPU ranks equals one GPU accumulating the N micro-batches, bit for bit (the
// simulated NCCL reduces in rank order). Without two GPUs the test reports SKIPPED.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dist/nccl_communicator.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/tensor.h"
#include "models/llama.h"
#include "models/sharded_llama.h"
#include "ops/elementwise.h"
#include "optim/adamw.h"
#include "optim/clip_grad.h"
#include "tests/llama_fixtures.h"

using namespace qtune;
using namespace qtune::dist;

namespace {

int ranks() { return std::min(4, cuda_device_count()); }

// Runs body(comm) on every rank, each a thread with its own GPU, and rethrows the first failure.
void on_every_rank(const std::function<void(NcclCommunicator&)>& body, CommunicatorOptions options = {}) {
  const int n = ranks();
  const std::string id = backend_for(Device::cuda(0)).new_collectives_id();
  std::vector<std::exception_ptr> failures(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        NcclCommunicator comm(Device::cuda(r), id, r, n, options);
        body(comm);
      } catch (...) {
        failures[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& f : failures)
    if (f) std::rethrow_exception(f);
}

Tensor on(const NcclCommunicator& comm, const std::vector<float>& values) {
  return Tensor::from_data(values.data(), {static_cast<int64_t>(values.size())}, DType::f32, comm.device());
}

}  // namespace

TEST_CASE("every collective on every GPU rank, several in flight") {
  on_every_rank([](NcclCommunicator& comm) {
    const int r = comm.rank(), n = comm.size();
    CHECK(comm.kind() == "nccl");
    // all_gather: block q holds rank q's values.
    const Tensor send = on(comm, {float(r), float(10 * r + 1), float(100 * r + 2)});
    const Tensor gathered = Tensor::empty({3 * n}, DType::f32, comm.device());
    auto gather = comm.all_gather(buffer_of(send), buffer_of(gathered));
    // reduce_scatter (sum), queued before the gather is waited for.
    std::vector<float> blocks(static_cast<size_t>(2 * n));
    for (int i = 0; i < 2 * n; ++i) blocks[static_cast<size_t>(i)] = float(i + r);
    const Tensor scatter_in = on(comm, blocks), mine = Tensor::empty({2}, DType::f32, comm.device());
    auto scatter = comm.reduce_scatter(buffer_of(scatter_in), buffer_of(mine), Reduce::sum);
    gather->wait();
    scatter->wait();
    const std::vector<float> g = gathered.to_vector<float>();
    for (int q = 0; q < n; ++q) {
      CHECK(g[static_cast<size_t>(3 * q)] == float(q));
      CHECK(g[static_cast<size_t>(3 * q + 2)] == float(100 * q + 2));
    }
    const std::vector<float> m = mine.to_vector<float>();
    for (int i = 0; i < 2; ++i) {
      float expected = 0;
      for (int q = 0; q < n; ++q) expected += float(2 * r + i + q);
      CHECK(m[static_cast<size_t>(i)] == expected);
    }
    // all_reduce max, broadcast from the last rank, barrier.
    const Tensor peak = on(comm, {float(r), float(-r)});
    comm.all_reduce(buffer_of(peak), Reduce::max)->wait();
    CHECK(peak.to_vector<float>() == std::vector<float>{float(n - 1), 0.0f});
    const Tensor word = on(comm, {float(r * 7), 1.5f});
    comm.broadcast(buffer_of(word), n - 1)->wait();
    CHECK(word.to_vector<float>() == std::vector<float>{float((n - 1) * 7), 1.5f});
    comm.barrier()->wait();
  });
}

TEST_CASE("bad calls are refused before anything is queued; check_calls passes agreeing calls") {
  CommunicatorOptions options;
  options.check_calls = true;
  on_every_rank(
      [](NcclCommunicator& comm) {
        std::vector<float> host(4);
        CHECK_THROWS_WITH_AS(comm.all_reduce(Buffer{host.data(), 4, DType::f32}, Reduce::sum),
                             doctest::Contains("NCCL moves GPU buffers of cuda:"), Error);
        const Tensor x = on(comm, {1, 2, 3});
        CHECK_THROWS_WITH_AS(comm.all_gather(buffer_of(x), buffer_of(x)), doctest::Contains("recv holds 3 elements"),
                             Error);
        // Still in step: a checked all_reduce of the same sizes on every rank.
        comm.all_reduce(buffer_of(x), Reduce::sum)->wait();
        CHECK(x.to_vector<float>()[2] == float(3 * comm.size()));
      },
      options);
}

namespace {

// The tests' tiny Llama, small enough for the simulator, with an embedding and head of 700 x 24: more than one
// norm block (16384 elements), so their pieces lie on two ranks.
std::unique_ptr<models::Llama> tiny_llama(Device device) {
  models::LlamaConfig config = testing::tiny_llama_config();
  config.vocab_size = 700;
  models::LlamaOptions o;
  o.seed = 7;
  o.device = device;
  return std::make_unique<models::Llama>(config, o);
}

// Micro-batch m: [1, 8] tokens and their targets.
std::pair<Tensor, Tensor> micro_batch(int m, Device device) {
  std::vector<int64_t> tokens(8), targets(8);
  for (int i = 0; i < 8; ++i) {
    tokens[static_cast<size_t>(i)] = (7 * i + 13 * m + 1) % 61;
    targets[static_cast<size_t>(i)] = (5 * i + 11 * m + 3) % 61;
  }
  return {Tensor::from_data(tokens.data(), {1, 8}, DType::i64, device),
          Tensor::from_data(targets.data(), {1, 8}, DType::i64, device)};
}

std::vector<std::vector<uint8_t>> bytes_of(const std::vector<Tensor>& tensors) {
  std::vector<std::vector<uint8_t>> out;
  for (const Tensor& t : tensors) {
    const Tensor host = t.to(Device::cpu()).contiguous();
    const auto* p = static_cast<const uint8_t*>(host.data_ptr());
    out.emplace_back(p, p + host.nbytes());
  }
  return out;
}

// One step over N GPU ranks against one GPU accumulating the N micro-batches. With offload the ranks measure the
// gradients' norm on the GPU and run the optimizer on the host, so the reference clips on its GPU and steps host
// copies of its parameters and gradients.
void check_gpu_step(bool offload) {
  const int n = ranks();
  auto reference = tiny_llama(Device::cuda(0));
  for (int m = 0; m < n; ++m) {
    const auto [tokens, targets] = micro_batch(m, Device::cuda(0));
    (reference->loss(tokens, targets) * (1.0 / n)).backward();
  }
  std::vector<Tensor> params = reference->trainable_parameters();
  optim::clip_grad_norm(params, 0.5);
  if (offload) {
    for (Tensor& p : params) {
      Tensor host = p.detach().to(Device::cpu());
      host.requires_grad_(true);
      host.set_grad(p.grad().to(Device::cpu()));
      p = host;
    }
  }
  optim::AdamW(params, {.lr = 1e-2}).step();
  const auto expected = bytes_of(params);

  std::vector<std::vector<std::vector<uint8_t>>> got(static_cast<size_t>(n));
  on_every_rank([&](NcclCommunicator& comm) {
    auto model = tiny_llama(comm.device());
    models::ShardedLlama sharded(*model, comm, dist::FsdpOptions{.offload = offload});
    const auto [tokens, targets] = micro_batch(comm.rank(), comm.device());
    (model->loss(tokens, targets) * (1.0 / n)).backward();
    sharded.finish_gradients(0.5);
    CHECK(sharded.parameters().front().device() == (offload ? Device::cpu() : comm.device()));
    optim::AdamW(sharded.parameters(), {.lr = 1e-2}).step();
    sharded.fsdp().after_step();
    sharded.fsdp().gather_all();
    // The blocks' whole tensors are not trainable now: compare every parameter, in the model's order.
    got[static_cast<size_t>(comm.rank())] = bytes_of(model->parameters());
    CHECK(model->parameters().front().device() == comm.device());
    sharded.fsdp().release_all();
  });
  REQUIRE(expected.size() == reference->parameters().size());  // every parameter trained
  for (int r = 0; r < n; ++r) {
    REQUIRE(got[static_cast<size_t>(r)].size() == expected.size());
    for (size_t j = 0; j < expected.size(); ++j) {
      INFO("rank ", r, ", parameter ", j);
      CHECK(got[static_cast<size_t>(r)][j] == expected[j]);
    }
  }
}

}  // namespace

TEST_CASE("FSDP on GPU ranks: a step over N ranks equals one GPU accumulating the N micro-batches") {
  check_gpu_step(false);
}

TEST_CASE("FSDP on GPU ranks with offload: shards, gradients and optimizer state in host memory") {
  check_gpu_step(true);
}

// Last: the simulator's failed collective leaves every simulated GPU faulted for the rest of the process.
TEST_CASE("a rank that never calls the collective: the others fail naming it, within the deadline") {
  CommunicatorOptions options;
  options.timeout = std::chrono::seconds(3);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> errors(static_cast<size_t>(ranks()));
  on_every_rank(
      [&](NcclCommunicator& comm) {
        if (comm.rank() == comm.size() - 1) return;  // this rank leaves without calling
        const Tensor x = on(comm, {1, 2});
        try {
          comm.all_reduce(buffer_of(x), Reduce::sum)->wait();
        } catch (const CollectiveError& e) {
          errors[static_cast<size_t>(comm.rank())] = e.what();
        }
      },
      options);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int r = 0; r + 1 < ranks(); ++r) {
    INFO(errors[static_cast<size_t>(r)]);
    CHECK(errors[static_cast<size_t>(r)].find("rank " + std::to_string(r) + ": all_reduce (sum) of 2 f32") == 0);
  }
  CHECK(took < 30);
}

int main(int argc, char** argv) {
  if (cuda_device_count() < 2) {
    std::printf(
        "SKIPPED: NcclCommunicator needs two GPUs (or the CUDA simulator with QTUNE_SIM_DEVICES=4); this "
        "build sees %d\n",
        cuda_device_count());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
