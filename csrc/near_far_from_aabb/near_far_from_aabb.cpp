// near_far_from_aabb: input validation and CPU/CUDA dispatch.
#include "common/checks.h"
#include "ops.h"

namespace pt3d_radnerf {
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb(const at::Tensor& rays_o,
                                                                  const at::Tensor& rays_d,
                                                                  const at::Tensor& aabb,
                                                                  double min_near) {
  check_rays_and_box(rays_o, rays_d, aabb);
  if (rays_o.is_cuda()) {
#ifdef WITH_CUDA
    return near_far_from_aabb_cuda(rays_o, rays_d, aabb, min_near);
#else
    fail_built_without_cuda("near_far_from_aabb");
#endif
  }
  return near_far_from_aabb_cpu(rays_o, rays_d, aabb, min_near);
}

std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near) {
  check_rays_and_box(rays_o, rays_d, aabb);
  check_shape(grad_near, "grad_near", {rays_o.size(0)}, "(N,)");
  check_shape(grad_far, "grad_far", {rays_o.size(0)}, "(N,)");
  check_same_dtype(grad_near, "grad_near", rays_o, "rays_o");
  check_same_dtype(grad_far, "grad_far", rays_o, "rays_o");
  check_same_device(grad_near, "grad_near", rays_o, "rays_o");
  check_same_device(grad_far, "grad_far", rays_o, "rays_o");
  check_contiguous(grad_near, "grad_near");
  check_contiguous(grad_far, "grad_far");
  if (rays_o.is_cuda()) {
#ifdef WITH_CUDA
    return near_far_from_aabb_backward_cuda(grad_near, grad_far, rays_o, rays_d, aabb,
                                            min_near);
#else
    fail_built_without_cuda("near_far_from_aabb_backward");
#endif
  }
  return near_far_from_aabb_backward_cpu(grad_near, grad_far, rays_o, rays_d, aabb, min_near);
}

}  // namespace pt3d_radnerf
