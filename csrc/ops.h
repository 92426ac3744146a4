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

// ---- composite: values (S,) alphas or sigmas, deltas (S,) (sigma mode), features (S, C), ts (S,),
// packed_info (R, 2) int64, transmittance (R,) initial -> features (R, C), opacity (R,), depth (R,),
// weights (S,), transmittance (R,) final
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward(
    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
    const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,
    bool sigma_mode, double t_thresh, double eps);
// -> grad_values (S,), grad_deltas (S,) (empty in alpha mode), grad_features (S, C),
// grad_transmittance (R,)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_backward(
    const at::Tensor& grad_features, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const at::Tensor& grad_transmittance, const at::Tensor& values, const at::Tensor& deltas,
    const at::Tensor& features, const at::Tensor& ts, const at::Tensor& packed_info,
    const at::Tensor& transmittance, bool sigma_mode, double t_thresh, double eps);
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

#define PT3D_COMPOSITE_BACKENDS(SUFFIX)                                                       \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>                      \
      composite_forward_##SUFFIX(const at::Tensor& values, const at::Tensor& deltas,          \
                                 const at::Tensor& features, const at::Tensor& ts,            \
                                 const at::Tensor& packed_info,                               \
                                 const at::Tensor& transmittance, bool sigma_mode,            \
                                 double t_thresh, double eps);                                \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_backward_##SUFFIX(     \
      const at::Tensor& grad_features, const at::Tensor& grad_opacity,                        \
      const at::Tensor& grad_depth, const at::Tensor& grad_transmittance,                     \
      const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,         \
      const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,   \
      bool sigma_mode, double t_thresh, double eps);
PT3D_COMPOSITE_BACKENDS(cpu)

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
PT3D_COMPOSITE_BACKENDS(cuda)
#endif

// ---- occupancy_march: occupancy-guided ray marching (count pass, prefix sum, fill pass).
// rays_o, rays_d (N, 3); jitter optional (N,) in [0, 1); ray_t_min optional (N,) per-ray start
// depth (resume point; NaN = finished ray); aabb (6,) base cascade box;
// bitfield uint8 (cascades * res^3 / 8,) -> ray_indices int64 (S,), t_starts, t_ends (S,),
// packed_info int64 (N, 2) = (start, count). t in the units of rays_d (t |rays_d| metric).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const c10::optional<at::Tensor>& jitter,
    const c10::optional<at::Tensor>& ray_t_min, const at::Tensor& aabb,
    const at::Tensor& bitfield, int64_t cascades, int64_t resolution, double t_min, double t_max,
    double dt_min, double dt_max, double dt_gamma, int64_t max_samples);
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

}  // namespace pt3d_radnerf

// ---- grid_encode / sh_encode (encoders) ------------------------------------------------
#include <string>
#include <vector>

namespace pt3d_radnerf {

struct GridLevels;  // csrc/grid_encode/grid_encode.h
struct ShNorm;      // csrc/sh_encode/sh_encode.h

// inputs (N, D) in [-bound, bound], embeddings (rows, C); offsets (L+1,) table rows per level,
// scales (L,) -> features (N, L*C) in the embeddings' dtype.
at::Tensor grid_encode(const at::Tensor& inputs, const at::Tensor& embeddings,
                       const std::vector<int64_t>& offsets, const std::vector<double>& scales,
                       const std::string& gridtype, bool align_corners,
                       const std::string& interpolation, double bound);
// grad_out (N, L*C) -> grad_embeddings (rows, C), grad_inputs (N, D) or None
std::tuple<at::Tensor, at::Tensor> grid_encode_backward(
    const at::Tensor& grad_out, const at::Tensor& inputs, const at::Tensor& embeddings,
    const std::vector<int64_t>& offsets, const std::vector<double>& scales,
    const std::string& gridtype, bool align_corners, const std::string& interpolation,
    double bound, bool input_grad);
// dirs (N, 3) -> (N, degree^2); and grad_out (N, degree^2) -> grad_dirs (N, 3)
at::Tensor sh_encode(const at::Tensor& dirs, int64_t degree);
at::Tensor sh_encode_backward(const at::Tensor& grad_out, const at::Tensor& dirs, int64_t degree);

at::Tensor grid_encode_cpu(const at::Tensor& inputs, const at::Tensor& embeddings,
                           const GridLevels& g);
std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& inputs,
                                                            const at::Tensor& embeddings,
                                                            const GridLevels& g, bool input_grad);
at::Tensor sh_encode_cpu(const at::Tensor& dirs, int degree, const ShNorm& norm);
at::Tensor sh_encode_backward_cpu(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                  const ShNorm& norm);
#ifdef WITH_CUDA
at::Tensor grid_encode_cuda(const at::Tensor& inputs, const at::Tensor& embeddings,
                            const GridLevels& g);
std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& inputs,
                                                             const at::Tensor& embeddings,
                                                             const GridLevels& g,
                                                             bool input_grad);
at::Tensor sh_encode_cuda(const at::Tensor& dirs, int degree, const ShNorm& norm);
at::Tensor sh_encode_backward_cuda(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                   const ShNorm& norm);
#endif
// ---- end grid_encode / sh_encode
}  // namespace pt3d_radnerf
