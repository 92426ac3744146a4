#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "common/cpu_utils.h"
#include "sh_encode/sh_encode.h"
#include "sh_encode/sh_encode_math.h"

namespace pt3d_radnerf {

at::Tensor sh_encode_cpu(const at::Tensor& dirs, int degree, const ShNorm& norm) {
  const int64_t n = dirs.size(0);
  const int64_t k = static_cast<int64_t>(degree) * degree;
  at::Tensor out = at::empty({n, k}, dirs.options());
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_encode_cpu", [&] {
    const scalar_t* d = dirs.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    parallel_for_each(n, kGrainHeavy, [&](int64_t i) {
      sh_eval<scalar_t>(d[3 * i], d[3 * i + 1], d[3 * i + 2], degree, norm, y + i * k, nullptr,
                        nullptr);
    });
  });
  return out;
}

at::Tensor sh_encode_backward_cpu(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                  const ShNorm& norm) {
  const int64_t n = dirs.size(0);
  const int64_t k = static_cast<int64_t>(degree) * degree;
  at::Tensor grad = at::empty_like(dirs);
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_encode_backward_cpu", [&] {
    const scalar_t* d = dirs.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* g = grad.data_ptr<scalar_t>();
    parallel_for_each(n, kGrainHeavy, [&](int64_t i) {
      scalar_t acc[3] = {0, 0, 0};
      sh_eval<scalar_t>(d[3 * i], d[3 * i + 1], d[3 * i + 2], degree, norm, nullptr, go + i * k,
                        acc);
      for (int j = 0; j < 3; ++j) g[3 * i + j] = acc[j];
    });
  });
  return grad;
}

}  // namespace pt3d_radnerf
