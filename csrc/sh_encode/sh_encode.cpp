// sh_encode: input validation, normalisation table and CPU/CUDA dispatch.
#include "sh_encode/sh_encode_math.h"

#include <cmath>

#include "common/checks.h"
#include "ops.h"

namespace pt3d_radnerf {
namespace {

ShNorm make_sh_norm() {
  ShNorm s{};
  const double pi = 3.14159265358979323846;
  for (int l = 0; l < kShMaxDegree; ++l) {
    for (int m = 0; m <= l; ++m) {
      double ratio = 1.0;  // (l-m)! / (l+m)!
      for (int k = l - m + 1; k <= l + m; ++k) ratio /= k;
      double v = std::sqrt((2 * l + 1) / (4 * pi) * ratio);
      if (m > 0) v *= std::sqrt(2.0) * ((m % 2) ? -1.0 : 1.0);
      s.n[l][m] = v;
    }
  }
  return s;
}

void check_sh(const at::Tensor& dirs, int64_t degree) {
  check_shape(dirs, "dirs", {-1, 3}, "(N, 3)");
  TORCH_CHECK_VALUE(degree >= 1 && degree <= kShMaxDegree, "degree must be in [1, ",
                    kShMaxDegree, "], got ", degree);
  check_supported_device(dirs, "dirs");
  if (dirs.is_cuda()) {
    check_dtype(dirs, "dirs", at::kFloat);
  } else {
    TORCH_CHECK_TYPE(dirs.scalar_type() == at::kFloat || dirs.scalar_type() == at::kDouble,
                     "dirs must be float32 or float64 on CPU, got ", dirs.scalar_type());
  }
  check_contiguous(dirs, "dirs");
}

}  // namespace

at::Tensor sh_encode(const at::Tensor& dirs, int64_t degree) {
  check_sh(dirs, degree);
  const ShNorm norm = make_sh_norm();
  if (dirs.is_cuda()) {
#ifdef WITH_CUDA
    return sh_encode_cuda(dirs, static_cast<int>(degree), norm);
#else
    fail_built_without_cuda("sh_encode");
#endif
  }
  return sh_encode_cpu(dirs, static_cast<int>(degree), norm);
}

at::Tensor sh_encode_backward(const at::Tensor& grad_out, const at::Tensor& dirs,
                              int64_t degree) {
  check_sh(dirs, degree);
  check_shape(grad_out, "grad_out", {dirs.size(0), degree * degree}, "(N, degree^2)");
  check_same_dtype(grad_out, "grad_out", dirs, "dirs");
  check_same_device(grad_out, "grad_out", dirs, "dirs");
  check_contiguous(grad_out, "grad_out");
  const ShNorm norm = make_sh_norm();
  if (dirs.is_cuda()) {
#ifdef WITH_CUDA
    return sh_encode_backward_cuda(grad_out, dirs, static_cast<int>(degree), norm);
#else
    fail_built_without_cuda("sh_encode_backward");
#endif
  }
  return sh_encode_backward_cpu(grad_out, dirs, static_cast<int>(degree), norm);
}

}  // namespace pt3d_radnerf
