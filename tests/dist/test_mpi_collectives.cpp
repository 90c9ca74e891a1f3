// MpiCommunicator under `mpirun -np N` (CTest runs N = 1, 2, 3 and 4): every collective's result on every
// rank, reductions equal to adding the ranks' contributions one after another in rank order (what one
// process accumulating them gets), several collectives in flight at once, and bad calls refused before
// anything is sent. Every rank runs every test case; the exit status is failing if any rank failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "dist/flat_layout.h"
#include "dist/mpi_communicator.h"
#include "engine/numerics/bf16.h"

using namespace qtune;
using namespace qtune::dist;

namespace {

MpiCommunicator* world = nullptr;

int rank() { return world->rank(); }
int ranks() { return world->size(); }

template <class T>
Buffer buffer(std::vector<T>& v, DType dtype) {
  return Buffer{v.data(), static_cast<int64_t>(v.size()), dtype};
}

// Rank r's element i: different on every rank, and for bf16 chosen so that the order of the sum shows.
float value(int r, int64_t i) {
  return r == 0 ? 256.0f + static_cast<float>(i % 3) : 1.0f + 0.5f * static_cast<float>((r + i) % 4);
}

}  // namespace

TEST_CASE("all_gather puts rank r's block at r, also in place") {
  std::vector<float> send(5), recv(5 * static_cast<size_t>(ranks()), -1.0f);
  for (int64_t i = 0; i < 5; ++i) send[static_cast<size_t>(i)] = value(rank(), i);
  world->all_gather(buffer(send, DType::f32), buffer(recv, DType::f32))->wait();
  for (int r = 0; r < ranks(); ++r)
    for (int64_t i = 0; i < 5; ++i) CHECK(recv[static_cast<size_t>(r * 5 + i)] == value(r, i));

  std::vector<float> in_place(3 * static_cast<size_t>(ranks()), 0.0f);
  for (int64_t i = 0; i < 3; ++i) in_place[static_cast<size_t>(rank() * 3 + i)] = value(rank(), i + 7);
  world->all_gather(Buffer{in_place.data() + rank() * 3, 3, DType::f32}, buffer(in_place, DType::f32))->wait();
  for (int r = 0; r < ranks(); ++r)
    for (int64_t i = 0; i < 3; ++i) CHECK(in_place[static_cast<size_t>(r * 3 + i)] == value(r, i + 7));
}

TEST_CASE("reduce_scatter and all_reduce sum in rank order, each step rounded (bf16 and f32)") {
  const int64_t block = 6, n = block * ranks();
  std::vector<uint16_t> send(static_cast<size_t>(n)), mine(static_cast<size_t>(block));
  for (int64_t i = 0; i < n; ++i) send[static_cast<size_t>(i)] = numerics::f32_to_bf16_bits(value(rank(), i));
  world->reduce_scatter(buffer(send, DType::bf16), buffer(mine, DType::bf16), Reduce::sum)->wait();
  for (int64_t i = 0; i < block; ++i) {
    const int64_t at = rank() * block + i;
    // What one process accumulating rank 0's, then rank 1's, ... contribution in bf16 gets.
    float expected = numerics::bf16_bits_to_f32(numerics::f32_to_bf16_bits(value(0, at)));
    for (int r = 1; r < ranks(); ++r)
      expected = numerics::bf16_bits_to_f32(
          numerics::f32_to_bf16_bits(expected + numerics::bf16_bits_to_f32(numerics::f32_to_bf16_bits(value(r, at)))));
    CHECK(numerics::bf16_bits_to_f32(mine[static_cast<size_t>(i)]) == expected);
  }

  std::vector<float> all(7);
  for (int64_t i = 0; i < 7; ++i) all[static_cast<size_t>(i)] = value(rank(), i) / 3.0f;
  world->all_reduce(buffer(all, DType::f32), Reduce::sum)->wait();
  for (int64_t i = 0; i < 7; ++i) {
    float expected = value(0, i) / 3.0f;
    for (int r = 1; r < ranks(); ++r) expected += value(r, i) / 3.0f;
    CHECK(all[static_cast<size_t>(i)] == expected);  // bit for bit
  }
}

TEST_CASE("all_reduce max, i64 sums, broadcast from every root") {
  std::vector<double> m = {static_cast<double>(rank()), -static_cast<double>(rank())};
  world->all_reduce(buffer(m, DType::f64), Reduce::max)->wait();
  CHECK(m[0] == ranks() - 1);
  CHECK(m[1] == 0.0);
  std::vector<int64_t> counts = {rank() + 1, int64_t{1} << 40};
  world->all_reduce(buffer(counts, DType::i64), Reduce::sum)->wait();
  CHECK(counts[0] == ranks() * (ranks() + 1) / 2);
  CHECK(counts[1] == ranks() * (int64_t{1} << 40));
  for (int root = 0; root < ranks(); ++root) {
    std::vector<int32_t> b = {rank() * 10, rank() * 10 + 1};
    world->broadcast(buffer(b, DType::i32), root)->wait();
    CHECK(b == std::vector<int32_t>{root * 10, root * 10 + 1});
  }
  world->barrier()->wait();
}

TEST_CASE("several collectives in flight, waited for in any order") {
  std::vector<float> a(4, 1.0f), b(4, 2.0f);
  std::vector<float> gathered(4 * static_cast<size_t>(ranks()));
  auto first = world->all_reduce(buffer(a, DType::f32), Reduce::sum);
  auto second = world->all_gather(buffer(b, DType::f32), buffer(gathered, DType::f32));
  auto third = world->barrier();
  third->wait();
  second->wait();
  first->wait();
  CHECK(a[3] == static_cast<float>(ranks()));
  CHECK(gathered.back() == 2.0f);
  {
    // A Work dropped unwaited completes before its buffers could go.
    std::vector<float> c(3, 1.0f);
    world->all_reduce(buffer(c, DType::f32), Reduce::sum);
    CHECK(c[0] == static_cast<float>(ranks()));
  }
}

TEST_CASE("a block's flat shards, all-gathered, rebuild every segment on every rank") {
  // Each rank packs only its own shard from the whole block, as a sharded loader would hold it.
  const std::vector<Segment> segments = {{"w", DType::f32, 1001, 1}, {"codes", DType::u8, 3 * 8192 + 40, 8192}};
  std::vector<float> w(1001);
  std::vector<uint8_t> codes(3 * 8192 + 40);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7);
  const FlatLayout layout(segments, ranks());
  std::vector<uint8_t> shard(static_cast<size_t>(layout.shard_bytes()));
  layout.pack_shard(rank(), {w.data(), codes.data()}, shard.data());
  std::vector<uint8_t> gathered(shard.size() * static_cast<size_t>(ranks()));
  world->all_gather(buffer(shard, DType::u8), buffer(gathered, DType::u8))->wait();
  std::vector<float> w_out(w.size());
  std::vector<uint8_t> codes_out(codes.size());
  layout.unpack_gathered(gathered.data(), {w_out.data(), codes_out.data()});
  CHECK(w_out == w);
  CHECK(codes_out == codes);
}

TEST_CASE("bad calls are refused on every rank before anything is sent, naming the collective") {
  std::vector<float> x(10);
  CHECK_THROWS_WITH_AS(
      world->all_gather(Buffer{x.data(), 3, DType::f32}, Buffer{x.data(), 3 * ranks() + 1, DType::f32}),
      doctest::Contains("all_gather of 3 f32 per rank: recv holds"), Error);
  CHECK_THROWS_WITH_AS(world->broadcast(Buffer{x.data(), 2, DType::f32}, ranks()),
                       doctest::Contains("is not a rank of"), Error);
  CHECK_THROWS_WITH_AS(world->all_reduce(Buffer{x.data(), 2, DType::f32, Device::cuda(0)}, Reduce::sum),
                       doctest::Contains("MPI moves CPU buffers, got cuda:0"), Error);
  // The refused calls sent nothing: the ranks still agree on what comes next.
  std::vector<float> y(2, 1.0f);
  world->all_reduce(buffer(y, DType::f32), Reduce::sum)->wait();
  CHECK(y[1] == static_cast<float>(ranks()));
}

int main(int argc, char** argv) {
  CommunicatorOptions options;
  options.timeout = std::chrono::seconds(60);
  options.check_calls = true;  // a test that calls collectives differently fails by name, not by hanging
  std::unique_ptr<MpiCommunicator> comm = MpiCommunicator::world(options);
  world = comm.get();
  doctest::Context context(argc, argv);
  int failed = context.run() != 0 ? 1 : 0;
  // Every rank exits with the same status: failing if any rank failed.
  std::vector<int32_t> status = {failed};
  world->all_reduce(Buffer{status.data(), 1, DType::i32}, Reduce::max)->wait();
  if (rank() == 0) std::printf("%d rank(s): %s\n", ranks(), status[0] == 0 ? "all passed" : "FAILED on some rank");
  comm.reset();
  return status[0];
}
