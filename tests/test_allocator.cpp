// CPU memory statistics: what the allocator reports must follow tensor lifetimes exactly, because
// peak-memory tests elsewhere (checkpointing, saved-tensor release) read these numbers.
#include <vector>

#include "engine/allocator.h"
#include "engine/storage.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("allocated follows tensor lifetimes; peak tracks the maximum; reset_peak") {
  const MemoryStats base = memory_stats(Device::cpu());
  {
    Tensor a = Tensor::empty({1000}, DType::f32);  // 4000 bytes
    MemoryStats s = memory_stats(Device::cpu());
    CHECK(s.allocated == base.allocated + 4000);
    CHECK(s.num_allocations == base.num_allocations + 1);
    CHECK(s.reserved == base.reserved + 4000);  // small blocks are not cached or rounded
    {
      Tensor b = Tensor::zeros({10, 10}, DType::f64);  // 800 bytes
      CHECK(memory_stats(Device::cpu()).allocated == base.allocated + 4800);
      CHECK(memory_stats(Device::cpu()).peak_allocated >= base.allocated + 4800);
    }
    s = memory_stats(Device::cpu());
    CHECK(s.allocated == base.allocated + 4000);
    CHECK(s.peak_allocated >= base.allocated + 4800);

    reset_peak_memory(Device::cpu());
    CHECK(memory_stats(Device::cpu()).peak_allocated == base.allocated + 4000);
    { Tensor c = Tensor::empty({300}, DType::bf16); }  // 600 bytes, freed at once
    CHECK(memory_stats(Device::cpu()).peak_allocated == base.allocated + 4600);
    CHECK(memory_stats(Device::cpu()).peak_reserved >= base.allocated + 4600);
  }
  CHECK(memory_stats(Device::cpu()).allocated == base.allocated);
  CHECK(memory_stats(Device::cpu()).reserved == base.reserved);
}

TEST_CASE("views share storage and allocate nothing") {
  Tensor a = Tensor::zeros({4, 6});
  const MemoryStats before = memory_stats(Device::cpu());
  {
    std::vector<Tensor> views{
        a.view({24}), a.transpose(0, 1),  a.narrow(1, 2, 3), a.select(0, 1), a.unsqueeze(0).expand({5, 4, 6}),
        a.detach(),   a.reshape({2, 12}), a.permute({1, 0}), a.contiguous()};
    for (const Tensor& v : views) CHECK(v.storage() == a.storage());
    const MemoryStats s = memory_stats(Device::cpu());
    CHECK(s.allocated == before.allocated);
    CHECK(s.num_allocations == before.num_allocations);
  }
  // A copy does allocate, and its storage goes away with it.
  {
    Tensor c = a.transpose(0, 1).contiguous();
    CHECK(c.storage() != a.storage());
    CHECK(memory_stats(Device::cpu()).allocated == before.allocated + 96);
  }
  CHECK(memory_stats(Device::cpu()).allocated == before.allocated);
}

TEST_CASE("Storage::wrap is not counted and runs its release callback once") {
  std::vector<float> host(256, 1.5f);
  int released = 0;
  const MemoryStats before = memory_stats(Device::cpu());
  {
    auto storage = Storage::wrap(host.data(), host.size() * sizeof(float), Device::cpu(), [&] { ++released; });
    Tensor t = Tensor::from_storage(storage, {16, 16}, contiguous_strides({16, 16}), 0, DType::f32);
    Tensor v = t.narrow(0, 4, 2);
    storage.reset();
    CHECK(v.to_vector<float>()[0] == 1.5f);
    CHECK(memory_stats(Device::cpu()).allocated == before.allocated);
    t = Tensor();
    CHECK(released == 0);  // v still holds the storage
  }
  CHECK(released == 1);
  CHECK(memory_stats(Device::cpu()).allocated == before.allocated);
  CHECK(memory_stats(Device::cpu()).num_allocations == before.num_allocations);
}

TEST_CASE("zero-byte tensors") {
  const MemoryStats before = memory_stats(Device::cpu());
  {
    Tensor e = Tensor::empty({0, 5});
    CHECK(e.numel() == 0);
    CHECK(e.to_vector<float>().empty());
  }
  CHECK(memory_stats(Device::cpu()).allocated == before.allocated);
}

TEST_CASE("large CPU blocks are cached and reused; statistics stay exact") {
  Allocator& cpu = allocator_for(Device::cpu());
  cpu.empty_cache();
  const MemoryStats base = memory_stats(Device::cpu());
  const size_t nbytes = (size_t{3} << 20) + 4;  // 3 MiB + 4 bytes: rounds to a 4 MiB block
  const size_t block = size_t{4} << 20;
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({int64_t(nbytes)}, DType::u8);
    first = a.data_ptr();
    const MemoryStats s = memory_stats(Device::cpu());
    CHECK(s.allocated == base.allocated + nbytes);
    CHECK(s.reserved == base.reserved + block);
  }
  // Freed: no longer allocated, still reserved (cached).
  CHECK(memory_stats(Device::cpu()).allocated == base.allocated);
  CHECK(memory_stats(Device::cpu()).reserved == base.reserved + block);
  {
    // Any request that rounds to the same block size takes the cached block back.
    Tensor b = Tensor::empty({int64_t(nbytes + 1000) / 4}, DType::f32);
    CHECK(b.data_ptr() == first);
    const MemoryStats s = memory_stats(Device::cpu());
    CHECK(s.allocated == base.allocated + b.nbytes());
    CHECK(s.reserved == base.reserved + block);
    CHECK(s.num_allocations == base.num_allocations + 2);
    // A second block of that size while the first is live comes from the system.
    Tensor c = Tensor::empty({int64_t(nbytes)}, DType::u8);
    CHECK(c.data_ptr() != first);
    CHECK(memory_stats(Device::cpu()).reserved == base.reserved + 2 * block);
  }
  cpu.empty_cache();
  CHECK(memory_stats(Device::cpu()).reserved == base.reserved);
  CHECK(memory_stats(Device::cpu()).allocated == base.allocated);
}

TEST_CASE("the CPU cache never holds more than the most bytes ever live at once") {
  Allocator& cpu = allocator_for(Device::cpu());
  cpu.empty_cache();
  const MemoryStats base = memory_stats(Device::cpu());
  // Ever larger blocks, one live at a time: caching every freed block would pile up 1 + 2 + ... + 16 =
  // 136 MiB. The cache keeps freed blocks only while their sum stays within the most bytes that large
  // blocks held at once (16 MiB here, earlier test cases held less).
  for (int mib = 1; mib <= 16; ++mib) Tensor t = Tensor::empty({int64_t(mib) << 20}, DType::u8);
  CHECK(memory_stats(Device::cpu()).allocated == base.allocated);
  CHECK(memory_stats(Device::cpu()).reserved - base.reserved <= size_t{16} << 20);
  CHECK(memory_stats(Device::cpu()).reserved - base.reserved > 0);  // but it does cache
  cpu.empty_cache();
  CHECK(memory_stats(Device::cpu()).reserved == base.reserved);
}
