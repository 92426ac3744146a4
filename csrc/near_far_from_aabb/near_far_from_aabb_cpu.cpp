#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common/cpu_utils.h"
#include "near_far_from_aabb/near_far_from_aabb_math.h"
#include "near_far_from_aabb/near_far_from_aabb.h"

namespace pt3d_radnerf {

std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cpu(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& aabb,
    double min_near) {
  const int64_t n = rays_o.size(0);
  at::Tensor nears = at::empty({n}, rays_o.options());
  at::Tensor fars = at::empty({n}, rays_o.options());
  at::Tensor hits = at::empty({n}, rays_o.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "near_far_from_aabb_cpu", [&] {
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* box = aabb.data_ptr<scalar_t>();
    scalar_t* near = nears.data_ptr<scalar_t>();
    scalar_t* far = fars.data_ptr<scalar_t>();
    bool* hit = hits.data_ptr<bool>();
    const scalar_t mn = static_cast<scalar_t>(min_near);
    parallel_for_each(n, kGrainCheap, [&](int64_t i) {
      const SlabHit<scalar_t> r = ray_aabb_slab(o + 3 * i, d + 3 * i, box, mn);
      near[i] = r.near;
      far[i] = r.far;
      hit[i] = r.hit;
    });
  });
  return {nears, fars, hits};
}

std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cpu(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near) {
  const int64_t n = rays_o.size(0);
  at::Tensor grad_o = at::empty({n, 3}, rays_o.options());
  at::Tensor grad_d = at::empty({n, 3}, rays_o.options());
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "near_far_from_aabb_backward_cpu", [&] {
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* box = aabb.data_ptr<scalar_t>();
    const scalar_t* gn = grad_near.data_ptr<scalar_t>();
    const scalar_t* gf = grad_far.data_ptr<scalar_t>();
    scalar_t* go = grad_o.data_ptr<scalar_t>();
    scalar_t* gd = grad_d.data_ptr<scalar_t>();
    const scalar_t mn = static_cast<scalar_t>(min_near);
    parallel_for_each(n, kGrainCheap, [&](int64_t i) {
      ray_aabb_slab_backward(o + 3 * i, d + 3 * i, box, mn, gn[i], gf[i], go + 3 * i,
                             gd + 3 * i);
    });
  });
  return {grad_o, grad_d};
}

}  // namespace pt3d_radnerf
