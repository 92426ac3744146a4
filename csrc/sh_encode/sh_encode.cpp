// sh_encode: schemas, input validation, the normalisation table and the CPU/CUDA kernel
// registrations.
#include "sh_encode/sh_encode.h"

#include <cmath>

#include "common/checks.h"
#include "common/registration.h"

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
  if (dirs.is_cuda()) {
    check_dtype(dirs, "dirs", at::kFloat);
  } else {
    TORCH_CHECK_TYPE(dirs.scalar_type() == at::kFloat || dirs.scalar_type() == at::kDouble,
                     "dirs must be float32 or float64 on CPU, got ", dirs.scalar_type());
  }
  check_contiguous(dirs, "dirs");
}

void check_sh_backward(const at::Tensor& grad_out, const at::Tensor& dirs, int64_t degree) {
  check_sh(dirs, degree);
  check_shape(grad_out, "grad_out", {dirs.size(0), degree * degree}, "(N, degree^2)");
  check_same_dtype(grad_out, "grad_out", dirs, "dirs");
  check_same_device(grad_out, "grad_out", dirs, "dirs");
  check_contiguous(grad_out, "grad_out");
}

}  // namespace

void define_sh_encode(torch::Library& m) {
  m.def("sh_encode(Tensor dirs, int degree) -> Tensor");
  m.def("sh_encode_backward(Tensor grad_out, Tensor dirs, int degree) -> Tensor");
}

#define PT3D_SH_ENCODE(BACKEND)                                                   \
  [](const at::Tensor& dirs, int64_t degree) {                                   \
    check_sh(dirs, degree);                                                      \
    return BACKEND(dirs, static_cast<int>(degree), make_sh_norm());              \
  }
#define PT3D_SH_ENCODE_BACKWARD(BACKEND)                                          \
  [](const at::Tensor& grad_out, const at::Tensor& dirs, int64_t degree) {       \
    check_sh_backward(grad_out, dirs, degree);                                   \
    return BACKEND(grad_out, dirs, static_cast<int>(degree), make_sh_norm());    \
  }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("sh_encode", PT3D_SH_ENCODE(sh_encode_cpu));
  m.impl("sh_encode_backward", PT3D_SH_ENCODE_BACKWARD(sh_encode_backward_cpu));
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "sh_encode", PT3D_SH_ENCODE(sh_encode_cuda));
  PT3D_CUDA_IMPL(m, "sh_encode_backward", PT3D_SH_ENCODE_BACKWARD(sh_encode_backward_cuda));
}

}  // namespace pt3d_radnerf
