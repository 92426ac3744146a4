// Every C++ entry point of pt3d_radnerf._C, and the per-device backends behind them.
//
// Public functions (bound in ext.cpp) validate their inputs (ValueError/TypeError naming
// the argument) and dispatch on device; <op>_cpu / <op>_cuda assume validated inputs.
// Light include on purpose: this header is compiled into every .cu file.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pt3d_radnerf {

// ---- near_far_from_aabb: rays_o, rays_d (N, 3); aabb (6,) -> near, far (N,), hit bool (N,)
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb(const at::Tensor& rays_o,
                                                                  const at::Tensor& rays_d,
                                                                  const at::Tensor& aabb,
                                                                  double min_near);
// grad_near, grad_far (N,) -> grad_rays_o, grad_rays_d (N, 3)
std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near);

// ---- morton3d: coords int32 (N, 3) in [0, 1024) -> codes int32 (N,); and the inverse.
at::Tensor morton3d(const at::Tensor& coords);
at::Tensor morton3d_invert(const at::Tensor& codes);

// ---- packbits: grid float (8M cells, any shape) -> bitfield uint8 (M,)
at::Tensor packbits(const at::Tensor& grid, double threshold);

// ---- backends -----------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cpu(const at::Tensor& rays_o,
                                                                      const at::Tensor& rays_d,
                                                                      const at::Tensor& aabb,
                                                                      double min_near);
std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cpu(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near);
at::Tensor morton3d_cpu(const at::Tensor& coords);
at::Tensor morton3d_invert_cpu(const at::Tensor& codes);
at::Tensor packbits_cpu(const at::Tensor& grid, double threshold);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> near_far_from_aabb_cuda(const at::Tensor& rays_o,
                                                                       const at::Tensor& rays_d,
                                                                       const at::Tensor& aabb,
                                                                       double min_near);
std::tuple<at::Tensor, at::Tensor> near_far_from_aabb_backward_cuda(
    const at::Tensor& grad_near, const at::Tensor& grad_far, const at::Tensor& rays_o,
    const at::Tensor& rays_d, const at::Tensor& aabb, double min_near);
at::Tensor morton3d_cuda(const at::Tensor& coords);
at::Tensor morton3d_invert_cuda(const at::Tensor& codes);
at::Tensor packbits_cuda(const at::Tensor& grid, double threshold);
#endif

// ---- occupancy_march: occupancy-guided ray marching (count pass, prefix sum, fill pass).
// rays_o, rays_d (N, 3); jitter optional (N,) in [0, 1); aabb (6,) base cascade box;
// bitfield uint8 (cascades * res^3 / 8,) -> ray_indices int64 (S,), t_starts, t_ends (S,),
// packed_info int64 (N, 2) = (start, count). t in the units of rays_d (t / |rays_d| metric).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const c10::optional<at::Tensor>& jitter,
    const at::Tensor& aabb, const at::Tensor& bitfield, int64_t cascades, int64_t resolution,
    double t_min, double t_max, double dt_min, double dt_max, double dt_gamma,
    int64_t max_samples);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_cpu(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,
    const at::Tensor& aabb, const at::Tensor& bitfield, int64_t cascades, int64_t resolution,
    double t_min, double t_max, double dt_min, double dt_max, double dt_gamma,
    int64_t max_samples);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_cuda(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,
    const at::Tensor& aabb, const at::Tensor& bitfield, int64_t cascades, int64_t resolution,
    double t_min, double t_max, double dt_min, double dt_max, double dt_gamma,
    int64_t max_samples);
#endif

}  // namespace pt3d_radnerf
