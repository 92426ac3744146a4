#include <ATen/ops/empty.h>

#include "common/cuda_utils.cuh"
#include "morton3d/morton3d_math.h"
#include "morton3d/morton3d.h"

namespace pt3d_radnerf {
namespace {

__global__ void morton3d_kernel(int64_t n, const int32_t* __restrict__ c,
                                int32_t* __restrict__ out) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    out[i] = static_cast<int32_t>(morton3d_encode(c[3 * i], c[3 * i + 1], c[3 * i + 2]));
  }
}

__global__ void morton3d_invert_kernel(int64_t n, const int32_t* __restrict__ in,
                                       int32_t* __restrict__ c) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    uint32_t x, y, z;
    morton3d_decode(static_cast<uint32_t>(in[i]), &x, &y, &z);
    c[3 * i] = static_cast<int32_t>(x);
    c[3 * i + 1] = static_cast<int32_t>(y);
    c[3 * i + 2] = static_cast<int32_t>(z);
  }
}

}  // namespace

at::Tensor morton3d_cuda(const at::Tensor& coords) {
  const c10::cuda::CUDAGuard guard(coords.device());
  const int64_t n = coords.size(0);
  at::Tensor codes = at::empty({n}, coords.options());
  if (n == 0) return codes;
  morton3d_kernel<<<blocks_for(n), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
      n, coords.data_ptr<int32_t>(), codes.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return codes;
}

at::Tensor morton3d_invert_cuda(const at::Tensor& codes) {
  const c10::cuda::CUDAGuard guard(codes.device());
  const int64_t n = codes.size(0);
  at::Tensor coords = at::empty({n, 3}, codes.options());
  if (n == 0) return coords;
  morton3d_invert_kernel<<<blocks_for(n), kThreadsPerBlock, 0,
                           at::cuda::getCurrentCUDAStream()>>>(n, codes.data_ptr<int32_t>(),
                                                               coords.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return coords;
}

}  // namespace pt3d_radnerf
