// Uses the installed library through its umbrella header: a matmul, a reduction and a backward pass,
// with the gradients checked against their closed forms. Exit 0 only if every value matches.
#include <cstdio>
#include <vector>

#include <qtune/qtune.h>

int main() {
  using qtune::Tensor;
  std::printf("qtune %s (CUDA backend built: %d)\n", QTUNE_VERSION_STRING, QTUNE_CUDA_BUILT);

  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector<float>({5, 6, 7, 8}, {2, 2});
  a.requires_grad_();
  b.requires_grad_();
  Tensor loss = qtune::ops::sum(qtune::ops::matmul(a, b));
  loss.backward();

  // loss = sum_ij (a @ b)_ij, so d/da = ones @ b^T (row sums of b) and d/db = a^T @ ones (column
  // sums of a, repeated along each row).
  const std::vector<float> want_loss{5 + 14 + 6 + 16 + 15 + 28 + 18 + 32};
  const std::vector<float> want_ga{11, 15, 11, 15};
  const std::vector<float> want_gb{4, 4, 6, 6};
  const std::vector<float> got_ga = a.grad().to_vector<float>();
  const std::vector<float> got_gb = b.grad().to_vector<float>();
  std::printf("loss %g, grad a [%g %g %g %g], grad b [%g %g %g %g]\n", loss.item(), got_ga[0], got_ga[1], got_ga[2],
              got_ga[3], got_gb[0], got_gb[1], got_gb[2], got_gb[3]);
  if (loss.item() != want_loss[0] || got_ga != want_ga || got_gb != want_gb) {
    std::fprintf(stderr, "FAIL: gradients differ from their closed forms\n");
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
