// sh_encode on CUDA: one thread per direction (float32).
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "common/cuda_utils.cuh"
#include "sh_encode/sh_encode.h"
#include "sh_encode/sh_encode_math.h"

namespace pt3d_radnerf {
namespace {

__global__ void sh_forward_kernel(int64_t n, int degree, const ShNorm norm,
                                  const float* __restrict__ d, float* __restrict__ y) {
  const int64_t k = static_cast<int64_t>(degree) * degree;
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    sh_eval<float>(d[3 * i], d[3 * i + 1], d[3 * i + 2], degree, norm, y + i * k, nullptr,
                   nullptr);
  }
}

__global__ void sh_backward_kernel(int64_t n, int degree, const ShNorm norm,
                                   const float* __restrict__ d, const float* __restrict__ go,
                                   float* __restrict__ g) {
  const int64_t k = static_cast<int64_t>(degree) * degree;
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    float acc[3] = {0.f, 0.f, 0.f};
    sh_eval<float>(d[3 * i], d[3 * i + 1], d[3 * i + 2], degree, norm, nullptr, go + i * k, acc);
    g[3 * i] = acc[0];
    g[3 * i + 1] = acc[1];
    g[3 * i + 2] = acc[2];
  }
}

}  // namespace

at::Tensor sh_encode_cuda(const at::Tensor& dirs, int degree, const ShNorm& norm) {
  const c10::cuda::CUDAGuard guard(dirs.device());
  const int64_t n = dirs.size(0);
  at::Tensor out = at::empty({n, static_cast<int64_t>(degree) * degree}, dirs.options());
  if (n == 0) return out;
  sh_forward_kernel<<<blocks_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
      n, degree, norm, dirs.data_ptr<float>(), out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor sh_encode_backward_cuda(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                   const ShNorm& norm) {
  const c10::cuda::CUDAGuard guard(dirs.device());
  const int64_t n = dirs.size(0);
  at::Tensor grad = at::empty_like(dirs);
  if (n == 0) return grad;
  sh_backward_kernel<<<blocks_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
      n, degree, norm, dirs.data_ptr<float>(), grad_out.data_ptr<float>(),
      grad.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad;
}

}  // namespace pt3d_radnerf
