// near_far_from_aabb: where rays enter and leave an axis-aligned box (slab test).
//
//   pt3d_radnerf::near_far_from_aabb(Tensor rays_o, Tensor rays_d, Tensor aabb, float min_near)
//       -> (Tensor near, Tensor far, Tensor hit)
//   pt3d_radnerf::near_far_from_aabb_backward(Tensor grad_near, Tensor grad_far, Tensor rays_o,
//       Tensor rays_d, Tensor aabb, float min_near) -> (Tensor grad_rays_o, Tensor grad_rays_d)
// rays_o, rays_d (N, 3) float32/float64; aabb (6,) CPU tensor of the rays' dtype (six host values,
// read without a device synchronisation); near, far (N,), hit bool (N,).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_near_far_from_aabb(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated by near_far_from_aabb.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cpu(const at::Tensor& rays_o,
                                                                      const at::Tensor& rays_d,
                                                                      const at::Tensor& aabb,
                                                                      double min_near);
std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cpu(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cuda(const at::Tensor& rays_o,
                                                                       const at::Tensor& rays_d,
                                                                       const at::Tensor& aabb,
                                                                       double min_near);
std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cuda(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near);
#endif

}  // namespace pt3d_radnerf
