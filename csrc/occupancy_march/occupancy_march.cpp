// occupancy_march: schema, input validation and the CPU/CUDA kernel registrations.
#include "occupancy_march/occupancy_march.h"

#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/registration.h"

namespace pt3d_radnerf {
namespace {

// An optional per-ray (N,) tensor with the dtype and device of rays_o; undefined when absent.
at::Tensor optional_per_ray(const std::optional<at::Tensor>& t, const char* name,
                            const at::Tensor& rays_o) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  check_shape(*t, name, {rays_o.size(0)}, "(N,) with N of rays_o");
  check_same_dtype(*t, name, rays_o, "rays_o");
  check_same_device(*t, name, rays_o, "rays_o");
  check_contiguous(*t, name);
  return *t;
}

using MarchArgs = std::tuple<at::Tensor, at::Tensor>;  // jitter, ray_t_min (undefined if absent)

MarchArgs check_inputs(const at::Tensor& rays_o, const at::Tensor& rays_d,
                       const std::optional<at::Tensor>& jitter,
                       const std::optional<at::Tensor>& ray_t_min, const at::Tensor& aabb,
                       const at::Tensor& bitfield, int64_t cascades, int64_t resolution,
                       double t_min, double t_max, double dt_min, double dt_max, double dt_gamma,
                       int64_t max_samples) {
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
                    "step sizes need 0 < dt_min <= dt_max and dt_gamma >= 0, got dt_min=",
                    dt_min, ", dt_max=", dt_max, ", dt_gamma=", dt_gamma);
  TORCH_CHECK_VALUE(t_max >= t_min, "t_max must be >= t_min, got ", t_min, " and ", t_max);
  TORCH_CHECK_VALUE(max_samples >= -1, "max_samples must be >= 0 (or -1: unlimited), got ",
                    max_samples);
  const at::Tensor jit = optional_per_ray(jitter, "jitter", rays_o);
  if (jit.defined() && jit.numel() > 0) {
    // Outside [0, 1) the first step would start before the box or skip a whole step.
    const at::Tensor ok = ((jit >= 0) & (jit < 1)).all();
    if (jit.is_cuda()) {
      at::_assert_async(ok, "jitter must lie in [0, 1)");  // device assert, no host sync
    } else {
      TORCH_CHECK_VALUE(ok.item<bool>(), "jitter must lie in [0, 1), got values in [",
                        jit.min().item<double>(), ", ", jit.max().item<double>(), "]");
    }
  }
  return {jit, optional_per_ray(ray_t_min, "ray_t_min", rays_o)};
}

}  // namespace

void define_occupancy_march(torch::Library& m) {
  m.def("occupancy_march(Tensor rays_o, Tensor rays_d, Tensor? jitter, Tensor? ray_t_min, "
        "Tensor aabb, Tensor bitfield, int cascades, int resolution, float t_min, float t_max, "
        "float dt_min, float dt_max, float dt_gamma, int max_samples) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
}

#define PT3D_OCCUPANCY_MARCH(BACKEND)                                                           \
  [](const at::Tensor& rays_o, const at::Tensor& rays_d, const std::optional<at::Tensor>& jitter, \
     const std::optional<at::Tensor>& ray_t_min, const at::Tensor& aabb,                       \
     const at::Tensor& bitfield, int64_t cascades, int64_t resolution, double t_min,           \
     double t_max, double dt_min, double dt_max, double dt_gamma, int64_t max_samples) {       \
    const auto [jit, start] = check_inputs(rays_o, rays_d, jitter, ray_t_min, aabb, bitfield,  \
                                           cascades, resolution, t_min, t_max, dt_min, dt_max, \
                                           dt_gamma, max_samples);                             \
    return BACKEND(rays_o, rays_d, jit, start, aabb, bitfield, cascades, resolution, t_min,    \
                   t_max, dt_min, dt_max, dt_gamma, max_samples);                              \
  }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("occupancy_march", PT3D_OCCUPANCY_MARCH(occupancy_march_cpu));
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "occupancy_march", PT3D_OCCUPANCY_MARCH(occupancy_march_cuda));
}

}  // namespace pt3d_radnerf
