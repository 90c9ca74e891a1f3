// Asking for a CUDA device that is not there fails loudly with a message naming the device; it never
// falls back to the CPU. Runs on every machine and in builds with or without the CUDA backend. The
// backends reach the engine through its registry (engine/backend_registry.h).
#include "engine/allocator.h"
#include "engine/backend.h"
#include "engine/backend_registry.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("device strings") {
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  CHECK(Device::cuda(2).str() == "cuda:2");
  CHECK_THROWS_WITH_AS(parse_device("cuda:x"), doctest::Contains("cuda:x"), Error);
  CHECK_THROWS_WITH_AS(parse_device("gpu"), doctest::Contains("expected cpu, cuda or cuda:N"), Error);
}

TEST_CASE("cuda_available agrees with the device count") {
  CHECK(cuda_device_count() >= 0);
  CHECK(cuda_available() == (cuda_device_count() > 0));
#if !defined(QTUNE_HAVE_CUDA)
  CHECK(cuda_device_count() == 0);
#endif
}

TEST_CASE("a CUDA device that is not there gives a clear error") {
  // One past the last device never exists, with or without a GPU.
  const int missing = cuda_device_count();
  const std::string name = "cuda:" + std::to_string(missing);
  CHECK_THROWS_WITH_AS(Tensor::empty({4}, DType::f32, Device::cuda(missing)), doctest::Contains(name.c_str()), Error);
  CHECK_THROWS_WITH_AS(Tensor::ones({2, 2}).to(Device::cuda(missing)), doctest::Contains(name.c_str()), Error);
  CHECK_THROWS_WITH_AS(memory_stats(Device::cuda(missing)), doctest::Contains(name.c_str()), Error);
  CHECK_THROWS_AS(Tensor::empty({4}, DType::f32, Device::cuda(-1)), Error);

  if (!cuda_available()) {
#if defined(QTUNE_HAVE_CUDA)
    const char* why = "no usable CUDA device";
#else
    const char* why = "no CUDA backend";
#endif
    CHECK_THROWS_WITH_AS(Tensor::empty({4}, DType::f32, Device::cuda()), doctest::Contains(why), Error);
    CHECK_THROWS_WITH_AS(Tensor::zeros({4}, DType::bf16, parse_device("cuda")), doctest::Contains("cuda:0"), Error);
  } else {
    CHECK_THROWS_WITH_AS(Tensor::empty({4}, DType::f32, Device::cuda(missing)), doctest::Contains("CUDA device(s)"),
                         Error);
  }
}

TEST_CASE("the CPU backend registers itself; the registry takes one backend per device type") {
  // Nothing in this test names cpu/: the backend got here through its own registration (and, in a static
  // build, the linker option qtune::qtune carries).
  CHECK(device_count(DeviceType::cpu) == 1);
  Backend& cpu = backend_for(Device::cpu());
  CHECK(cpu.name() == "cpu");
  CHECK(&backend_for(Device::cpu()) == &cpu);
  CHECK(device_count(DeviceType::cuda) == cuda_device_count());
  CHECK_THROWS_WITH_AS(backend_for(Device{DeviceType::cpu, 1}), doctest::Contains("device cpu:1 does not exist"),
                       Error);
  const BackendProvider another{[] { return 1; }, [](int) -> Backend& { return backend_for(Device::cpu()); }};
  CHECK_THROWS_WITH_AS(register_backend(DeviceType::cpu, another),
                       doctest::Contains("two backends are linked for device type cpu"), Error);
  CHECK_THROWS_WITH_AS(register_backend(DeviceType::cpu, {nullptr, nullptr}),
                       doctest::Contains("a provider needs both device_count and backend"), Error);
  // The failed registrations left the first one in place.
  CHECK(&backend_for(Device::cpu()) == &cpu);
}
