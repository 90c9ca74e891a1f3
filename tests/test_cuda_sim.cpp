// Self-tests of the CUDA simulator (cuda/sim/, built with QTUNE_CUDA=SIM): planted bugs it must catch,
// and the documented results of barriers, warp collectives, atomics, streams and cuBLASLt that the
// kernels rely on. Kernels here are written as CUDA and launched through cuda/launch.cuh like the
// backend's own.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <mma.h>
#include <nccl.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "cuda/device_util.cuh"
#include "cuda/sim/errors.h"
#include "cuda/sim/settings.h"
#include "engine/check.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/fp8.h"

using qtune::gpu::launch;
using qtune::gpu::LaunchShape;

namespace {

constexpr int kThreads = 256;

// Sums x[0..n) in one block: each thread a strided partial sum, then a shared-memory tree.
template <bool Barrier>
__global__ void block_sum(const float* x, int n, float* out) {
  QTUNE_SHARED(float, partial, kThreads);
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  partial[threadIdx.x] = s;
  if (Barrier) __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = partial[0];
}

// Copies x[0..n] into y: one element too many (the planted off-by-one).
[[maybe_unused]] __global__ void copy_one_too_many(const float* x, int n, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i <= n) y[i < n ? i : 0] = x[i];
}

__global__ void early_exit_before_barrier(int* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void write_lanes(int* out) { out[threadIdx.x] = static_cast<int>(threadIdx.x); }

__global__ void half_warp_shuffle(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 16) v = __shfl_sync(0xffffffffu, v, 0);
  out[threadIdx.x] = v;
}

__global__ void shuffle_without_self(int* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, static_cast<int>(threadIdx.x), 0);
}

// Every warp collective, results written per lane: [shfl, up, down, xor, shfl width 8, xor width 8,
// ballot, any, all].
__global__ void warp_ops(const int* in, int* out) {
  const int lane = static_cast<int>(threadIdx.x), v = in[lane];
  const unsigned full = 0xffffffffu;
  out[0 * 32 + lane] = __shfl_sync(full, v, (lane * 7 + 3) % 32);
  out[1 * 32 + lane] = __shfl_up_sync(full, v, 5);
  out[2 * 32 + lane] = __shfl_down_sync(full, v, 3);
  out[3 * 32 + lane] = __shfl_xor_sync(full, v, 9);
  out[4 * 32 + lane] = __shfl_sync(full, v, lane + 5, 8);
  out[5 * 32 + lane] = __shfl_xor_sync(full, v, 12, 8);
  out[6 * 32 + lane] = static_cast<int>(__ballot_sync(full, v % 3 == 0));
  out[7 * 32 + lane] = __any_sync(full, v == 17);
  out[8 * 32 + lane] = __all_sync(full, v >= 0);
}

__global__ void count_with_atomics(int* counter, float* total) {
  atomicAdd(counter, 1);
  atomicAdd(total, 0.5f);
}

__global__ void too_much_shared(float* out) {
  QTUNE_SHARED(float, big, 13000);  // 52000 bytes, over the 48 KiB a block may use
  big[threadIdx.x] = 1.0f;
  out[0] = big[0];
}

__global__ void misaligned_vector_load(const float* x, float* out) {
  const qtune::gpu::Pack<float> p = qtune::gpu::load_pack(x + 1, 0);
  out[0] = p.v[0];
}

__global__ void dynamic_shared_reverse(const int* in, int* out, int n) {
  QTUNE_DYNAMIC_SHARED(int, buffer);
  buffer[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = buffer[n - 1 - static_cast<int>(threadIdx.x)];
}

// C[32, 32] = A[32, 32] B[32, 32] in bf16 with f32 accumulation, one 16x16 tile per warp (4 warps), A
// row-major and B column-major, over two k tiles.
__global__ void wmma_gemm(const __nv_bfloat16* a, const __nv_bfloat16* b, float* c) {
  using namespace nvcuda;
  const int warp = static_cast<int>(threadIdx.x) / 32, tile_row = warp / 2, tile_col = warp % 2;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k = 0; k < 32; k += 16) {
    wmma::load_matrix_sync(fa, a + tile_row * 16 * 32 + k, 32);
    wmma::load_matrix_sync(fb, b + tile_col * 16 * 32 + k, 32);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(c + tile_row * 16 * 32 + tile_col * 16, acc, 32, wmma::mem_row_major);
}

// The planted misuse: a tile pointer one element off its 32-byte alignment, or half a warp loading.
__global__ void wmma_misuse(const __nv_bfloat16* a, int offset, int lanes) {
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> fa;
  if (static_cast<int>(threadIdx.x) < lanes) nvcuda::wmma::load_matrix_sync(fa, a + offset, 16);
}

template <class T>
T* device_copy(const std::vector<T>& host) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, host.size() * sizeof(T)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return static_cast<T*>(p);
}

template <class T>
std::vector<T> host_copy(const T* device, size_t n) {
  std::vector<T> host(n);
  REQUIRE(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return host;
}

// Synchronizes, expects the fault `code` with a message containing every fragment, and clears it.
void expect_fault(cudaError_t code, std::initializer_list<const char*> fragments) {
  const cudaError_t got = cudaDeviceSynchronize();
  CHECK(got == code);
  const std::string message = cudaGetErrorString(got);
  for (const char* f : fragments) CHECK_MESSAGE(message.find(f) != std::string::npos, message, " lacks ", f);
  qtune::sim::clear_sticky_error();
}

// Runs body in a child process; returns what the child wrote to stderr and whether it exited cleanly.
[[maybe_unused]] std::pair<std::string, bool> in_child(void (*body)()) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    body();
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {text, WIFEXITED(status) && WEXITSTATUS(status) == 0};
}

}  // namespace

TEST_CASE("a block reduction is exact with its barrier and wrong without it, under every seed") {
  std::vector<float> x(1000);
  std::iota(x.begin(), x.end(), 1.0f);  // exact in f32: the sum is 500500
  float* dx = device_copy(x);
  float* dout = device_copy(std::vector<float>{0.0f});
  const uint64_t saved = qtune::sim::seed();
  for (uint64_t seed : {0, 1, 2, 12345}) {
    CAPTURE(seed);
    qtune::sim::set_seed(seed);
    launch<block_sum<true>>(LaunchShape{1, kThreads}, dx, 1000, dout);
    CHECK(host_copy(dout, 1)[0] == 500500.0f);
    // The planted bug: without the barrier a thread adds its partner's slot before the partner wrote it.
    launch<block_sum<false>>(LaunchShape{1, kThreads}, dx, 1000, dout);
    CHECK(host_copy(dout, 1)[0] != 500500.0f);
  }
  qtune::sim::set_seed(saved);
  cudaFree(dx);
  cudaFree(dout);
}

TEST_CASE("a barrier some threads never reach is reported as a deadlock, not a hang") {
  int* out = device_copy(std::vector<int>(64, 0));
  launch<early_exit_before_barrier>(LaunchShape{1, 64}, out);
  expect_fault(cudaErrorLaunchFailure, {"kernel early_exit_before_barrier", "block (0,0,0)", "deadlock",
                                        "16 thread(s) wait at __syncthreads", "48 thread(s) have exited"});
  // After the fault every call reports it until it is cleared; cleared, the device works again.
  launch<early_exit_before_barrier>(LaunchShape{1, 16}, out);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  cudaFree(out);
}

TEST_CASE("QTUNE_CUDA_SYNC=1 reports a fault at the launch that caused it") {
  int* out = device_copy(std::vector<int>(64, 0));
  // Without it the fault waits in the stream and surfaces at the next synchronizing call.
  launch<early_exit_before_barrier>(LaunchShape{1, 64}, out);
  CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);
  qtune::sim::clear_sticky_error();
  ::setenv("QTUNE_CUDA_SYNC", "1", 1);
  CHECK_THROWS_WITH_AS(launch<early_exit_before_barrier>(LaunchShape{1, 64}, out),
                       doctest::Contains("CUDA kernel early_exit_before_barrier failed (QTUNE_CUDA_SYNC=1"),
                       qtune::Error);
  ::unsetenv("QTUNE_CUDA_SYNC");
  qtune::sim::clear_sticky_error();
  cudaFree(out);
}

TEST_CASE("kernels write mapped pinned memory (device_fault's record), never other pinned memory") {
  void* mapped = nullptr;
  void* plain = nullptr;
  REQUIRE(cudaHostAlloc(&mapped, 32 * sizeof(int), cudaHostAllocMapped) == cudaSuccess);
  REQUIRE(cudaMallocHost(&plain, 32 * sizeof(int)) == cudaSuccess);
  launch<write_lanes>(LaunchShape{1, 32}, static_cast<int*>(mapped));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (int i = 0; i < 32; ++i) CHECK(static_cast<int*>(mapped)[i] == i);
  CHECK_THROWS_WITH_AS(launch<write_lanes>(LaunchShape{1, 32}, static_cast<int*>(plain)),
                       doctest::Contains("is unmapped pinned host memory"), qtune::Error);
  qtune::sim::clear_sticky_error();
  cudaFreeHost(mapped);
  cudaFreeHost(plain);
}

TEST_CASE("device_fail's formatter writes %s and %lld as snprintf does, cut at the buffer's end") {
  using qtune::gpu::FaultArg;
  const char* format = "%s: id %lld at %lld of %lld\n";
  for (const long long id : {0ll, 7ll, -3ll, 1234567890123ll, LLONG_MIN, LLONG_MAX}) {
    CAPTURE(id);
    const FaultArg args[] = {FaultArg("embedding"), FaultArg(id), FaultArg(-1ll), FaultArg(32000ll)};
    char expected[256];
    std::snprintf(expected, sizeof expected, "%s: id %lld at %lld of %lld", "embedding", id, -1ll, 32000ll);
    char text[256];
    qtune::gpu::format_fault(text, sizeof text, format, args, 4);
    CHECK(std::string(text) == expected);  // the final newline dropped
    char short_text[12];
    qtune::gpu::format_fault(short_text, sizeof short_text, format, args, 4);
    CHECK(std::string(short_text) == std::string(expected).substr(0, sizeof short_text - 1));
  }
}

TEST_CASE("warp collectives: missing lanes deadlock, a mask without the caller faults") {
  int* out = device_copy(std::vector<int>(32, 0));
  launch<half_warp_shuffle>(LaunchShape{1, 32}, out);
  expect_fault(cudaErrorLaunchFailure, {"kernel half_warp_shuffle", "deadlock", "__shfl_sync with mask 0xffffffff"});
  launch<shuffle_without_self>(LaunchShape{1, 32}, out);
  expect_fault(cudaErrorIllegalInstruction, {"kernel shuffle_without_self", "leaves out the calling lane"});
  cudaFree(out);
}

TEST_CASE("warp shuffles and votes give the programming guide's results") {
  std::vector<int> in(32);
  for (int i = 0; i < 32; ++i) in[static_cast<size_t>(i)] = i * i + 1;
  int* din = device_copy(in);
  int* dout = device_copy(std::vector<int>(9 * 32, -1));
  launch<warp_ops>(LaunchShape{1, 32}, din, dout);
  const std::vector<int> out = host_copy(dout, 9 * 32);
  unsigned ballot = 0;
  for (int i = 0; i < 32; ++i) ballot |= (in[static_cast<size_t>(i)] % 3 == 0 ? 1u : 0u) << i;
  for (int lane = 0; lane < 32; ++lane) {
    CAPTURE(lane);
    auto at = [&](int src) { return in[static_cast<size_t>(src)]; };
    auto got = [&](int op) { return out[static_cast<size_t>(op * 32 + lane)]; };
    CHECK(got(0) == at((lane * 7 + 3) % 32));
    CHECK(got(1) == (lane >= 5 ? at(lane - 5) : at(lane)));      // below lane 0: own value
    CHECK(got(2) == (lane + 3 < 32 ? at(lane + 3) : at(lane)));  // past lane 31: own value
    CHECK(got(3) == at(lane ^ 9));
    const int segment = lane / 8 * 8;
    CHECK(got(4) == at(segment + (lane + 5) % 8));  // the source lane wraps within its group of 8
    // xor with 12 leaves the group of 8: a later group gives back the own value, an earlier one its lane.
    CHECK(got(5) == ((lane ^ 12) < segment + 8 ? at(lane ^ 12) : at(lane)));
    CHECK(static_cast<unsigned>(got(6)) == ballot);
    CHECK(got(7) == 1);  // lane 4 holds 17
    CHECK(got(8) == 1);
  }
  cudaFree(din);
  cudaFree(dout);
}

TEST_CASE("WMMA: a bf16 tile GEMM equals the reference; misaligned or partial-warp loads fault") {
  std::vector<__nv_bfloat16> a(32 * 32), b(32 * 32);  // b[j * 32 + l] is B(l, j): column-major
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = __float2bfloat16(static_cast<float>(static_cast<int>(i * 37 % 17) - 8) / 4.0f);
    b[i] = __float2bfloat16(static_cast<float>(static_cast<int>(i * 11 % 13) - 6) / 8.0f);
  }
  __nv_bfloat16* da = device_copy(a);
  __nv_bfloat16* db = device_copy(b);
  float* dc = device_copy(std::vector<float>(32 * 32, -1.0f));
  launch<wmma_gemm>(LaunchShape{1, 128}, da, db, dc);
  const std::vector<float> c = host_copy(dc, 32 * 32);
  for (int i = 0; i < 32; ++i) {
    for (int j = 0; j < 32; ++j) {
      float acc = 0.0f;
      for (int l = 0; l < 32; ++l)
        acc +=
            __bfloat162float(a[static_cast<size_t>(i * 32 + l)]) * __bfloat162float(b[static_cast<size_t>(j * 32 + l)]);
      CHECK(c[static_cast<size_t>(i * 32 + j)] == acc);
    }
  }
  launch<wmma_misuse>(LaunchShape{1, 32}, da, 1, 32);
  expect_fault(cudaErrorMisalignedAddress, {"kernel wmma_misuse", "load_matrix_sync", "32-byte aligned"});
  launch<wmma_misuse>(LaunchShape{1, 32}, da, 0, 16);
  expect_fault(cudaErrorLaunchFailure, {"kernel wmma_misuse", "deadlock", "16 thread(s) have exited"});
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

TEST_CASE("atomics add up across every block and thread") {
  int* counter = device_copy(std::vector<int>{0});
  float* total = device_copy(std::vector<float>{0.0f});
  launch<count_with_atomics>(LaunchShape{37, 96}, counter, total);
  CHECK(host_copy(counter, 1)[0] == 37 * 96);
  CHECK(host_copy(total, 1)[0] == 37 * 96 * 0.5f);
  cudaFree(counter);
  cudaFree(total);
}

TEST_CASE("dynamic shared memory is the launch's, shared by the block") {
  std::vector<int> in(200);
  std::iota(in.begin(), in.end(), 0);
  int* din = device_copy(in);
  int* dout = device_copy(std::vector<int>(200, -1));
  launch<dynamic_shared_reverse>(LaunchShape{1, 200, 200 * sizeof(int)}, din, dout, 200);
  const std::vector<int> out = host_copy(dout, 200);
  for (int i = 0; i < 200; ++i) CHECK(out[static_cast<size_t>(i)] == 199 - i);
  cudaFree(din);
  cudaFree(dout);
}

TEST_CASE("launch limits: threads per block, empty grids, shared memory, host pointers") {
  float* d = device_copy(std::vector<float>(64, 1.0f));
  CHECK_THROWS_WITH_AS(launch<too_much_shared>(LaunchShape{1, 1025}, d), doctest::Contains("1 to 1024 threads"),
                       qtune::Error);
  CHECK_THROWS_WITH_AS(launch<too_much_shared>(LaunchShape{0, 32}, d), doctest::Contains("grid (0,1,1)"), qtune::Error);
  CHECK_THROWS_WITH_AS(launch<dynamic_shared_reverse>(LaunchShape{1, 32, 64 * 1024}, nullptr, nullptr, 0),
                       doctest::Contains("over the device limit"), qtune::Error);
  launch<too_much_shared>(LaunchShape{1, 32}, d);
  expect_fault(cudaErrorLaunchOutOfResources, {"kernel too_much_shared", "52000 bytes", "over the device limit"});
  std::vector<float> host(64);
  CHECK_THROWS_WITH_AS(launch<too_much_shared>(LaunchShape{1, 32}, host.data()), doctest::Contains("argument 0"),
                       qtune::Error);
  launch<misaligned_vector_load>(LaunchShape{1, 1}, d, d);
  expect_fault(cudaErrorMisalignedAddress, {"kernel misaligned_vector_load", "thread (0,0,0)", "not 16-byte aligned"});
  cudaFree(d);
}

TEST_CASE("an out-of-bounds read in a kernel is caught, naming the kernel") {
#if defined(__SANITIZE_ADDRESS__)
  // The planted off-by-one: thread n reads x[n], one past the allocation. AddressSanitizer stops the
  // process; the simulator adds which kernel, block and thread was running.
  const auto [text, clean] = in_child([] {
    std::vector<float> x(100, 1.0f);
    float* dx = device_copy(x);
    float* dy = device_copy(x);
    launch<copy_one_too_many>(LaunchShape{1, 128}, dx, 100, dy);
    cudaDeviceSynchronize();
  });
  CHECK_FALSE(clean);
  CHECK_MESSAGE(text.find("heap-buffer-overflow") != std::string::npos, text);
  CHECK_MESSAGE(text.find("kernel copy_one_too_many, block (0,0,0), thread (100,0,0)") != std::string::npos, text);
  // The host touching device memory outside a copy is caught the same way.
  const auto [host_text, host_clean] = in_child([] {
    float* dx = device_copy(std::vector<float>(8, 1.0f));
    volatile float v = dx[3];
    (void)v;
  });
  CHECK_FALSE(host_clean);
  CHECK_MESSAGE(host_text.find("use-after-poison") != std::string::npos, host_text);
#else
  std::printf("SKIPPED: out-of-bounds detection needs the AddressSanitizer build (cmake --preset asan)\n");
#endif
}

TEST_CASE("stream order: pinned results appear only after a synchronize; events time the work") {
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  float* d = device_copy(std::vector<float>(16, 2.5f));
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 16 * sizeof(float)) == cudaSuccess);
  std::memset(pinned, 0, 16 * sizeof(float));
  cudaEvent_t start = nullptr, stop = nullptr;
  REQUIRE(cudaEventCreate(&start) == cudaSuccess);
  REQUIRE(cudaEventCreate(&stop) == cudaSuccess);
  REQUIRE(cudaEventRecord(start, stream) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(pinned, d, 16 * sizeof(float), cudaMemcpyDeviceToHost, stream) == cudaSuccess);
  REQUIRE(cudaEventRecord(stop, stream) == cudaSuccess);
  float ms = -1.0f;
  CHECK(cudaEventElapsedTime(&ms, start, stop) == cudaErrorNotReady);  // nothing has run yet
  CHECK(static_cast<float*>(pinned)[0] == 0.0f);  // a host that reads before synchronizing sees old data
  REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
  CHECK(static_cast<float*>(pinned)[15] == 2.5f);
  CHECK(cudaEventElapsedTime(&ms, start, stop) == cudaSuccess);
  CHECK(ms >= 0.0f);
  // The copy direction is checked against the memory, not trusted.
  std::vector<float> host(16);
  CHECK(cudaMemcpy(host.data(), d, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(std::string(cudaGetErrorString(cudaGetLastError())).find("copies device to host") != std::string::npos);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaStreamDestroy(stream);
}

TEST_CASE("cuBLASLt fp8: scales, amax, the TN layout; descriptors it does not know are refused") {
  // A [k=32, m=3] e4m3 transposed, B [k=32, n=2] e4m3: D[3, 2] f32 = a_scale * b_scale * A^T B.
  const int m = 3, n = 2, k = 32;
  std::vector<uint8_t> a(static_cast<size_t>(k * m)), b(static_cast<size_t>(k * n));
  for (size_t i = 0; i < a.size(); ++i) a[i] = qtune::numerics::f32_to_e4m3(static_cast<float>(i % 7) - 3.0f);
  for (size_t i = 0; i < b.size(); ++i) b[i] = qtune::numerics::f32_to_e4m3(0.5f * static_cast<float>(i % 5));
  uint8_t* da = device_copy(a);
  uint8_t* db = device_copy(b);
  float* dd = device_copy(std::vector<float>(static_cast<size_t>(m * n), 0.0f));
  float* scales = device_copy(std::vector<float>{0.5f, 4.0f, 0.0f});  // a, b, amax out
  cublasLtHandle_t handle = nullptr;
  REQUIRE(cublasLtCreate(&handle) == CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulDesc_t op = nullptr;
  REQUIRE(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
  const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
  const float* a_scale = scales;
  const float* b_scale = scales + 1;
  float* amax = scales + 2;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, &amax, sizeof amax);
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, m, k);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, n, k);
  cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  REQUIRE(cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, ld, ld, pref, 1, &result, &found) ==
          CUBLAS_STATUS_SUCCESS);
  REQUIRE(found == 1);
  const float alpha = 1.0f, beta = 0.0f;
  REQUIRE(cublasLtMatmul(handle, op, &alpha, da, la, db, lb, &beta, dd, ld, dd, ld, &result.algo, nullptr, 0,
                         nullptr) == CUBLAS_STATUS_SUCCESS);
  const std::vector<float> d = host_copy(dd, static_cast<size_t>(m * n));
  float expected_amax = 0.0f;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int l = 0; l < k; ++l)
        acc += qtune::numerics::e4m3_to_f32(a[static_cast<size_t>(l + i * k)]) *
               qtune::numerics::e4m3_to_f32(b[static_cast<size_t>(l + j * k)]);
      CHECK(d[static_cast<size_t>(i + j * m)] == acc * 2.0f);
      expected_amax = std::max(expected_amax, std::fabs(acc * 2.0f));
    }
  }
  CHECK(host_copy(scales, 3)[2] == expected_amax);
  // fp8 wants A transposed and B not ("TN"): another layout is refused, naming why.
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &nn, sizeof nn);
  CHECK(cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, ld, ld, pref, 1, &result, &found) ==
        CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(std::string(cublasLtGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED)).find("TN") != std::string::npos);
  const int32_t epilogue = 2;  // a ReLU epilogue: not simulated
  CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue) ==
        CUBLAS_STATUS_NOT_SUPPORTED);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(handle);
  for (void* p : {static_cast<void*>(da), static_cast<void*>(db), static_cast<void*>(dd), static_cast<void*>(scales)})
    cudaFree(p);
}

// NCCL ----------------------------------------------------------------------------------------------------

namespace {

// Runs body(rank, comm, stream) on one host thread per rank, each on its own simulated GPU.
template <class Body>
void with_ranks(int nranks, Body body) {
  REQUIRE(qtune::sim::device_count() >= nranks);  // CTest runs this test with QTUNE_SIM_DEVICES=4
  ncclUniqueId id;
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < nranks; ++rank) {
    threads.emplace_back([&, rank] {
      cudaSetDevice(rank);
      cudaStream_t stream = nullptr;
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      ncclComm_t comm = nullptr;
      if (ncclCommInitRank(&comm, nranks, id, rank) != ncclSuccess) return;
      body(rank, comm, stream);
      ncclCommDestroy(comm);
      cudaStreamDestroy(stream);
    });
  }
  for (std::thread& t : threads) t.join();
}

template <class T>
T* device_copy_on_thread(const std::vector<T>& host) {  // no doctest assertions off the main thread
  void* p = nullptr;
  cudaMalloc(&p, host.size() * sizeof(T));
  cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(p);
}

template <class T>
std::vector<T> host_copy_on_thread(const T* device, size_t n) {
  std::vector<T> host(n);
  cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

}  // namespace

TEST_CASE("NCCL over thread ranks: all-reduce, reduce-scatter, all-gather, broadcast, in place, grouped") {
  constexpr int kRanks = 4, kCount = 6;
  std::vector<std::vector<float>> sum(kRanks), scattered(kRanks);
  std::vector<std::vector<uint16_t>> avg_bf16(kRanks);
  std::vector<std::vector<int32_t>> gathered(kRanks);
  std::vector<std::vector<uint8_t>> broadcast(kRanks);
  std::vector<cudaError_t> status(kRanks, cudaErrorLaunchFailure);
  auto value = [](int rank, int i) { return 0.1f * static_cast<float>(rank + 1) + static_cast<float>(i); };
  with_ranks(kRanks, [&](int rank, ncclComm_t comm, cudaStream_t stream) {
    std::vector<float> mine(kCount * kRanks);
    for (int i = 0; i < kCount * kRanks; ++i) mine[static_cast<size_t>(i)] = value(rank, i);
    float* x = device_copy_on_thread(mine);
    float* part = device_copy_on_thread(std::vector<float>(kCount, 0.0f));
    std::vector<uint16_t> b(kCount);
    for (int i = 0; i < kCount; ++i) b[static_cast<size_t>(i)] = qtune::numerics::f32_to_bf16_bits(value(rank, i));
    uint16_t* xb = device_copy_on_thread(b);
    int32_t* id = device_copy_on_thread(std::vector<int32_t>{rank * 10, rank * 10 + 1});
    int32_t* all_ids = device_copy_on_thread(std::vector<int32_t>(2 * kRanks, -1));
    uint8_t* bytes = device_copy_on_thread(std::vector<uint8_t>(3, static_cast<uint8_t>(rank)));
    ncclGroupStart();
    ncclAllReduce(x, x, kCount * kRanks, ncclFloat32, ncclSum, comm, stream);  // in place
    ncclReduceScatter(x, part, kCount, ncclFloat32, ncclMax, comm, stream);
    ncclGroupEnd();
    ncclAllReduce(xb, xb, kCount, ncclBfloat16, ncclAvg, comm, stream);
    ncclAllGather(id, all_ids, 2, ncclInt32, comm, stream);
    ncclBroadcast(bytes, bytes, 3, ncclUint8, 2, comm, stream);
    status[static_cast<size_t>(rank)] = cudaStreamSynchronize(stream);
    sum[static_cast<size_t>(rank)] = host_copy_on_thread(x, kCount * kRanks);
    scattered[static_cast<size_t>(rank)] = host_copy_on_thread(part, kCount);
    avg_bf16[static_cast<size_t>(rank)] = host_copy_on_thread(xb, kCount);
    gathered[static_cast<size_t>(rank)] = host_copy_on_thread(all_ids, 2 * kRanks);
    broadcast[static_cast<size_t>(rank)] = host_copy_on_thread(bytes, 3);
    for (void* p : {static_cast<void*>(x), static_cast<void*>(part), static_cast<void*>(xb), static_cast<void*>(id),
                    static_cast<void*>(all_ids), static_cast<void*>(bytes)})
      cudaFree(p);
  });
  for (int rank = 0; rank < kRanks; ++rank) {
    CAPTURE(rank);
    const size_t r = static_cast<size_t>(rank);
    CHECK(status[r] == cudaSuccess);
    for (int i = 0; i < kCount * kRanks; ++i) {
      float expected = value(0, i);  // in rank order, in f32
      for (int k = 1; k < kRanks; ++k) expected += value(k, i);
      CHECK(sum[r][static_cast<size_t>(i)] == expected);
      // The reduce-scatter ran on the sums, identical on every rank: the max is the sum itself.
      if (i / kCount == rank) CHECK(scattered[r][static_cast<size_t>(i % kCount)] == expected);
    }
    for (int i = 0; i < kCount; ++i) {
      float acc = 0.0f;
      for (int k = 0; k < kRanks; ++k)
        acc += qtune::numerics::bf16_bits_to_f32(qtune::numerics::f32_to_bf16_bits(value(k, i)));
      CHECK(avg_bf16[r][static_cast<size_t>(i)] == qtune::numerics::f32_to_bf16_bits(acc / kRanks));
    }
    for (int k = 0; k < kRanks; ++k) {
      CHECK(gathered[r][static_cast<size_t>(2 * k)] == 10 * k);
      CHECK(gathered[r][static_cast<size_t>(2 * k + 1)] == 10 * k + 1);
    }
    CHECK(broadcast[r] == std::vector<uint8_t>(3, 2));
  }
}

TEST_CASE("NCCL ranks that disagree, or one that never comes, fail every rank instead of hanging") {
  std::vector<std::string> messages(2);
  with_ranks(2, [&](int rank, ncclComm_t comm, cudaStream_t stream) {
    float* x = device_copy_on_thread(std::vector<float>(8, 1.0f));
    if (rank == 0)
      ncclAllReduce(x, x, 8, ncclFloat32, ncclSum, comm, stream);
    else
      ncclBroadcast(x, x, 8, ncclFloat32, 0, comm, stream);
    messages[static_cast<size_t>(rank)] = cudaGetErrorString(cudaStreamSynchronize(stream));
  });
  for (const std::string& m : messages) {
    CHECK_MESSAGE(m.find("disagree at collective #0") != std::string::npos, m);
    CHECK_MESSAGE(m.find("ncclBroadcast") != std::string::npos, m);
  }
  qtune::sim::clear_sticky_error();

  ::setenv("QTUNE_SIM_NCCL_TIMEOUT_S", "1", 1);
  std::string late;
  with_ranks(2, [&](int rank, ncclComm_t comm, cudaStream_t stream) {
    if (rank == 1) return;  // the rank that died
    float* x = device_copy_on_thread(std::vector<float>(8, 1.0f));
    ncclAllReduce(x, x, 8, ncclFloat32, ncclSum, comm, stream);
    late = cudaGetErrorString(cudaStreamSynchronize(stream));
  });
  ::unsetenv("QTUNE_SIM_NCCL_TIMEOUT_S");
  CHECK_MESSAGE(late.find("rank(s) 1 never reached it within 1 s") != std::string::npos, late);
  qtune::sim::clear_sticky_error();
}
