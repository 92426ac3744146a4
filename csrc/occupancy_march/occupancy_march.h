// occupancy_march: occupancy-guided ray marching (count pass, prefix sum, fill pass).
//
//   pt3d_radnerf::occupancy_march(Tensor rays_o, Tensor rays_d, Tensor? jitter, Tensor? ray_t_min,
//       Tensor aabb, Tensor bitfield, int cascades, int resolution, float t_min, float t_max,
//       float dt_min, float dt_max, float dt_gamma, int max_samples)
//       -> (Tensor ray_indices, Tensor t_starts, Tensor t_ends, Tensor packed_info)
// rays_o, rays_d (N, 3); jitter optional (N,) in [0, 1); ray_t_min optional (N,) per-ray start
// depth (resume point; NaN = finished ray); aabb (6,) base cascade box, a CPU tensor of the rays'
// dtype; bitfield uint8 (cascades * res^3 / 8,); max_samples < 0: unlimited
// -> ray_indices int64 (S,), t_starts, t_ends (S,), packed_info int64 (N, 2) = (start, count).
// t in the units of rays_d (t |rays_d| metric). S is data-dependent.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_occupancy_march(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated by occupancy_march.cpp; jitter / ray_t_min undefined when absent.
#define PT3D_OCCUPANCY_MARCH_BACKEND(SUFFIX)                                                    \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_##SUFFIX(         \
      const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,           \
      const at::Tensor& ray_t_min, const at::Tensor& aabb, const at::Tensor& bitfield,        \
      int64_t cascades, int64_t resolution, double t_min, double t_max, double dt_min,        \
      double dt_max, double dt_gamma, int64_t max_samples);
PT3D_OCCUPANCY_MARCH_BACKEND(cpu)
#ifdef WITH_CUDA
PT3D_OCCUPANCY_MARCH_BACKEND(cuda)
#endif
#undef PT3D_OCCUPANCY_MARCH_BACKEND

}  // namespace pt3d_radnerf
