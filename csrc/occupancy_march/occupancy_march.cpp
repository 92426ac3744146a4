// occupancy_march: input validation and CPU/CUDA dispatch.
#include <ATen/ATen.h>

#include "common/checks.h"
#include "ops.h"

namespace pt3d_radnerf {
namespace {

// An optional per-ray (N,) tensor with the dtype and device of rays_o; undefined when absent.
at::Tensor optional_per_ray(const c10::optional<at::Tensor>& t, const char* name,
                            const at::Tensor& rays_o) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  check_shape(*t, name, {rays_o.size(0)}, "(N,) with N of rays_o");
  check_same_dtype(*t, name, rays_o, "rays_o");
  check_same_device(*t, name, rays_o, "rays_o");
  check_contiguous(*t, name);
  return *t;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const c10::optional<at::Tensor>& jitter,
    const c10::optional<at::Tensor>& ray_t_min, const at::Tensor& aabb,
    const at::Tensor& bitfield, int64_t cascades, int64_t resolution, double t_min, double t_max,
    double dt_min, double dt_max, double dt_gamma, int64_t max_samples) {
  check_rays_and_box(rays_o, rays_d, aabb);
  check_dtype(bitfield, "bitfield", at::kByte);
  check_same_device(bitfield, "bitfield", rays_o, "rays_o");
  check_contiguous(bitfield, "bitfield");
  TORCH_CHECK_VALUE(resolution >= 2 && resolution <= 1024 && (resolution & (resolution - 1)) == 0,
                    "resolution must be a power of two in [2, 1024], got ", resolution);
  TORCH_CHECK_VALUE(cascades >= 1 && cascades <= 16, "cascades must be in [1, 16], got ",
                    cascades);
  const int64_t cells = cascades * resolution * resolution * resolution;
  TORCH_CHECK_VALUE(bitfield.dim() == 1 && bitfield.size(0) == cells / 8, "bitfield must have "
                    "shape (cascades * resolution^3 / 8,) = (", cells / 8, ",), got ",
                    shape_str(bitfield));
  TORCH_CHECK_VALUE(dt_min > 0 && dt_max >= dt_min && dt_gamma >= 0,
                    "step sizes need 0 < dt_min <= dt_max and dt_gamma >= 0, got dt_min=", dt_min,
                    ", dt_max=", dt_max, ", dt_gamma=", dt_gamma);
  TORCH_CHECK_VALUE(t_max >= t_min, "t_max must be >= t_min, got ", t_min, " and ", t_max);
  const at::Tensor jit = optional_per_ray(jitter, "jitter", rays_o);
  const at::Tensor start = optional_per_ray(ray_t_min, "ray_t_min", rays_o);
  if (rays_o.is_cuda()) {
#ifdef WITH_CUDA
    return occupancy_march_cuda(rays_o, rays_d, jit, start, aabb, bitfield, cascades, resolution, t_min,
                                t_max, dt_min, dt_max, dt_gamma, max_samples);
#else
    fail_built_without_cuda("occupancy_march");
#endif
  }
  return occupancy_march_cpu(rays_o, rays_d, jit, start, aabb, bitfield, cascades, resolution, t_min,
                             t_max, dt_min, dt_max, dt_gamma, max_samples);
}

}  // namespace pt3d_radnerf
