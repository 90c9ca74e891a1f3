// The pieces of dist/ that every communicator shares, on one rank: rank-order reduction (each step
// rounded to the dtype), buffer checks and the call comparison behind check_calls; and the
// LocalCommunicator a program gets when no launcher started it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "dist/local_communicator.h"
#include "dist/world.h"
#include "engine/numerics/bf16.h"
#include "engine/tensor.h"

using namespace qtune;
using namespace qtune::dist;

namespace {

uint16_t bf16_bits(float v) { return numerics::f32_to_bf16_bits(v); }
float bf16_value(uint16_t bits) { return numerics::bf16_bits_to_f32(bits); }

}  // namespace

TEST_CASE("reduce_in_rank_order adds rank after rank, rounding each step to the dtype") {
  // In bf16, 256 + 1 rounds back to 256 (ties to even), so adding four 1s one at a time to 256 leaves 256,
  // while adding them together first would give 260: the order is the definition.
  const std::vector<uint16_t> parts = {bf16_bits(256.0f), bf16_bits(1.0f), bf16_bits(1.0f), bf16_bits(1.0f),
                                       bf16_bits(1.0f)};
  uint16_t out = 0;
  reduce_in_rank_order(Reduce::sum, DType::bf16, parts.data(), 5, 1, 1, &out);
  CHECK(bf16_value(out) == 256.0f);
  const std::vector<uint16_t> ones_first = {bf16_bits(1.0f), bf16_bits(1.0f), bf16_bits(1.0f), bf16_bits(1.0f),
                                            bf16_bits(256.0f)};
  reduce_in_rank_order(Reduce::sum, DType::bf16, ones_first.data(), 5, 1, 1, &out);
  CHECK(bf16_value(out) == 260.0f);

  // f32 blocks `stride` apart, in place over block 0; max propagates NaN.
  std::vector<float> f = {1.0f, 2.0f, -7.0f, 10.0f, 20.0f, -1.0f, 100.0f, NAN, -3.0f};
  reduce_in_rank_order(Reduce::sum, DType::f32, f.data(), 3, 2, 3, f.data());
  CHECK(f[0] == 111.0f);
  CHECK(std::isnan(f[1]));
  std::vector<float> g = {1.0f, 2.0f, 10.0f, -20.0f, -5.0f, NAN};
  reduce_in_rank_order(Reduce::max, DType::f32, g.data(), 3, 2, 2, g.data());
  CHECK(g[0] == 10.0f);
  CHECK(std::isnan(g[1]));
  std::vector<int64_t> i = {3, 4, 5, 6};
  reduce_in_rank_order(Reduce::sum, DType::i64, i.data(), 2, 2, 2, i.data());
  CHECK(i[0] == 8);
  CHECK(i[1] == 10);
  CHECK_THROWS_WITH_AS(reduce_in_rank_order(Reduce::sum, DType::u8, i.data(), 2, 1, 1, i.data()),
                       doctest::Contains("dtype u8 is not reducible"), Error);
}

TEST_CASE("find_mismatch names the collective number and both ranks' calls") {
  CallSignature a{7, 1024, 1024, -1, Collective::all_reduce, Reduce::sum, DType::f32};
  CallSignature b = a;
  CHECK(find_mismatch({a, b, b}).empty());
  b.kind = Collective::all_gather;
  b.send_count = 512;
  b.recv_count = 1536;
  CHECK(find_mismatch({a, a, b}) ==
        "collective #7: rank 0 calls all_reduce (sum) of 1024 f32, rank 2 calls all_gather of 512 f32 per rank");
  CallSignature late = a;
  late.sequence = 8;
  CHECK(find_mismatch({a, late}) ==
        "collective #7: rank 0 calls all_reduce (sum) of 1024 f32, rank 1 calls all_reduce (sum) of 1024 f32 (its #8)");
  CallSignature max = a;
  max.op = Reduce::max;
  CHECK(find_mismatch({a, max}).find("rank 1 calls all_reduce (max)") != std::string::npos);
}

TEST_CASE("check_buffers refuses sizes, dtypes and roots that do not fit the world") {
  std::vector<float> x(12);
  const Buffer six{x.data(), 6, DType::f32}, twelve{x.data(), 12, DType::f32};
  const CallSignature gather{0, 6, 12, -1, Collective::all_gather, Reduce::sum, DType::f32};
  CHECK_NOTHROW(check_buffers(gather, 2, six, twelve));
  CHECK_THROWS_WITH_AS(check_buffers(gather, 3, six, twelve),
                       doctest::Contains("all_gather of 6 f32 per rank: recv holds 12 elements, not 3 ranks x 6"),
                       Error);
  const CallSignature scatter{0, 12, 5, -1, Collective::reduce_scatter, Reduce::sum, DType::f32};
  CHECK_THROWS_WITH_AS(check_buffers(scatter, 2, twelve, Buffer{x.data(), 5, DType::f32}),
                       doctest::Contains("pad it to a multiple of the world size"), Error);
  const CallSignature cast{0, 6, 6, 4, Collective::broadcast, Reduce::sum, DType::f32};
  CHECK_THROWS_WITH_AS(check_buffers(cast, 4, six, six), doctest::Contains("root 4 is not a rank of 4"), Error);
  const CallSignature sum_u8{0, 6, 6, -1, Collective::all_reduce, Reduce::sum, DType::u8};
  CHECK_THROWS_WITH_AS(check_buffers(sum_u8, 1, Buffer{x.data(), 6, DType::u8}, Buffer{x.data(), 6, DType::u8}),
                       doctest::Contains("reductions take f64, f32, bf16, f16, i64 or i32"), Error);
  CHECK_THROWS_WITH_AS(check_buffers(gather, 2, six, Buffer{x.data(), 12, DType::f64}),
                       doctest::Contains("send is f32 but recv f64"), Error);
  CHECK_THROWS_WITH_AS(buffer_of(Tensor::zeros({4, 6}).transpose(0, 1)),
                       doctest::Contains("collectives take contiguous tensors"), Error);
}

TEST_CASE("one rank alone: every collective is a copy, done when it returns") {
  LocalCommunicator comm;
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  const Tensor send = Tensor::from_vector<float>({1, 2, 3}, {3}), recv = Tensor::zeros({3});
  comm.all_gather(buffer_of(send), buffer_of(recv))->wait();
  CHECK(recv.to_vector<float>() == std::vector<float>{1, 2, 3});
  const Tensor scattered = Tensor::zeros({3});
  comm.reduce_scatter(buffer_of(send), buffer_of(scattered), Reduce::sum)->wait();
  CHECK(scattered.to_vector<float>() == std::vector<float>{1, 2, 3});
  comm.all_reduce(buffer_of(send), Reduce::max)->wait();
  comm.broadcast(buffer_of(send), 0)->wait();
  comm.barrier()->wait();
  CHECK(send.to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK_THROWS_WITH_AS(comm.broadcast(buffer_of(send), 1), doctest::Contains("root 1 is not a rank of 1"), Error);
}

TEST_CASE("world_communicator: one rank when no launcher started the process") {
  REQUIRE_FALSE(launched_as_rank());  // ctest starts this executable directly
  const auto comm = world_communicator();
  CHECK(comm->kind() == "local");
  CHECK(comm->size() == 1);
}
