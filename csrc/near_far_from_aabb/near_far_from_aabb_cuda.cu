#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common/cuda_utils.cuh"
#include "near_far_from_aabb/near_far_from_aabb_math.h"
#include "near_far_from_aabb/near_far_from_aabb.h"

namespace pt3d_radnerf {
namespace {

// The box travels by value as a kernel argument: aabb is a host tensor (six values), so no copy.
template <typename scalar_t>
struct Box6 {
  scalar_t v[6];
};

template <typename scalar_t>
Box6<scalar_t> host_box(const at::Tensor& aabb) {
  Box6<scalar_t> b;
  const scalar_t* src = aabb.data_ptr<scalar_t>();
  for (int k = 0; k < 6; ++k) b.v[k] = src[k];
  return b;
}

template <typename scalar_t>
__global__ void near_far_from_aabb_kernel(int64_t n, const scalar_t* __restrict__ o,
                                          const scalar_t* __restrict__ d,
                                          const Box6<scalar_t> box, scalar_t min_near,
                                          scalar_t* __restrict__ near,
                                          scalar_t* __restrict__ far, bool* __restrict__ hit) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    const SlabHit<scalar_t> r = ray_aabb_slab(o + 3 * i, d + 3 * i, box.v, min_near);
    near[i] = r.near;
    far[i] = r.far;
    hit[i] = r.hit;
  }
}

template <typename scalar_t>
__global__ void near_far_from_aabb_backward_kernel(
    int64_t n, const scalar_t* __restrict__ o, const scalar_t* __restrict__ d,
    const Box6<scalar_t> box, scalar_t min_near, const scalar_t* __restrict__ gn,
    const scalar_t* __restrict__ gf, scalar_t* __restrict__ go, scalar_t* __restrict__ gd) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    ray_aabb_slab_backward(o + 3 * i, d + 3 * i, box.v, min_near, gn[i], gf[i], go + 3 * i,
                           gd + 3 * i);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cuda(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb,
    double min_near) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  at::Tensor nears = at::empty({n}, rays_o.options());
  at::Tensor fars = at::empty({n}, rays_o.options());
  at::Tensor hits = at::empty({n}, rays_o.options().dtype(at::kBool));
  if (n == 0) return {nears, fars, hits};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "near_far_from_aabb_cuda", [&] {
    near_far_from_aabb_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
        n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), host_box<scalar_t>(aabb),
        static_cast<scalar_t>(min_near), nears.data_ptr<scalar_t>(), fars.data_ptr<scalar_t>(),
        hits.data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {nears, fars, hits};
}

std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cuda(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  at::Tensor grad_o = at::empty({n, 3}, rays_o.options());
  at::Tensor grad_d = at::empty({n, 3}, rays_o.options());
  if (n == 0) return {grad_o, grad_d};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "near_far_from_aabb_backward_cuda", [&] {
    near_far_from_aabb_backward_kernel<scalar_t>
        <<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
            n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(),
            host_box<scalar_t>(aabb), static_cast<scalar_t>(min_near),
            grad_near.data_ptr<scalar_t>(), grad_far.data_ptr<scalar_t>(),
            grad_o.data_ptr<scalar_t>(), grad_d.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_o, grad_d};
}

}  // namespace pt3d_radnerf
