// near_far_from_aabb: schemas, input validation and the CPU/CUDA kernel registrations.
#include "near_far_from_aabb/near_far_from_aabb.h"

#include "common/checks.h"
#include "common/registration.h"

namespace pt3d_radnerf {
namespace {

void check_backward(const at::Tensor& grad_near, const at::Tensor& grad_far,
                    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb) {
  check_rays_and_box(rays_o, rays_d, aabb);
  for (const auto& [g, name] : {std::pair{&grad_near, "grad_near"}, std::pair{&grad_far, "grad_far"}}) {
    check_shape(*g, name, {rays_o.size(0)}, "(N,)");
    check_same_dtype(*g, name, rays_o, "rays_o");
    check_same_device(*g, name, rays_o, "rays_o");
    check_contiguous(*g, name);
  }
}

}  // namespace

void define_near_far_from_aabb(torch::Library& m) {
  m.def("near_far_from_aabb(Tensor rays_o, Tensor rays_d, Tensor aabb, float min_near) -> "
        "(Tensor, Tensor, Tensor)");
  m.def("near_far_from_aabb_backward(Tensor grad_near, Tensor grad_far, Tensor rays_o, "
        "Tensor rays_d, Tensor aabb, float min_near) -> (Tensor, Tensor)");
}

#define PT3D_NEAR_FAR(BACKEND)                                                                \
  [](const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb,             \
     double min_near) {                                                                      \
    check_rays_and_box(rays_o, rays_d, aabb);                                                \
    return BACKEND(rays_o, rays_d, aabb, min_near);                                          \
  }
#define PT3D_NEAR_FAR_BACKWARD(BACKEND)                                                       \
  [](const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,      \
     const at::Tensor& rays_d, const at::Tensor& aabb, double min_near) {                    \
    check_backward(grad_near, grad_far, rays_o, rays_d, aabb);                               \
    return BACKEND(grad_near, grad_far, rays_o, rays_d, aabb, min_near);                     \
  }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("near_far_from_aabb", PT3D_NEAR_FAR(near_far_from_aabb_cpu));
  m.impl("near_far_from_aabb_backward", PT3D_NEAR_FAR_BACKWARD(near_far_from_aabb_backward_cpu));
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "near_far_from_aabb", PT3D_NEAR_FAR(near_far_from_aabb_cuda));
  PT3D_CUDA_IMPL(m, "near_far_from_aabb_backward",
                 PT3D_NEAR_FAR_BACKWARD(near_far_from_aabb_backward_cuda));
}

}  // namespace pt3d_radnerf
