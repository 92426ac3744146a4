#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common/cuda_utils.cuh"
#include "packbits/packbits.h"
#include "packbits/packbits_math.h"

namespace pt3d_radnerf {
namespace {

template <typename scalar_t>
__global__ void packbits_kernel(int64_t n, const scalar_t* __restrict__ grid, scalar_t threshold,
                                uint8_t* __restrict__ out) {
  PT3D_CUDA_KERNEL_LOOP(i, n) { out[i] = pack_byte(grid + 8 * i, threshold); }
}

}  // namespace

at::Tensor packbits_cuda(const at::Tensor& grid, double threshold) {
  const c10::cuda::CUDAGuard guard(grid.device());
  const int64_t n = grid.numel() / 8;
  at::Tensor bitfield = at::empty({n}, grid.options().dtype(at::kByte));
  if (n == 0) return bitfield;
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(grid.scalar_type(), "packbits_cuda", [&] {
    packbits_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0,
                                at::cuda::getCurrentCUDAStream()>>>(
        n, grid.data_ptr<scalar_t>(), static_cast<scalar_t>(threshold),
        bitfield.data_ptr<uint8_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return bitfield;
}

}  // namespace pt3d_radnerf
