// composite: emission-absorption compositing of packed samples (math: composite_math.h).
//
//   pt3d_radnerf::composite(Tensor values, Tensor deltas, Tensor features, Tensor ts,
//       Tensor packed_info, Tensor transmittance, bool sigma_mode, float t_thresh, float eps)
//       -> (Tensor features, Tensor opacity, Tensor depth, Tensor weights, Tensor transmittance)
//   pt3d_radnerf::composite_backward(Tensor grad_features, Tensor grad_opacity, Tensor grad_depth,
//       Tensor grad_transmittance, <the forward's inputs>)
//       -> (Tensor grad_values, Tensor grad_deltas, Tensor grad_features, Tensor grad_transmittance)
// values (S,) alphas or sigmas, deltas (S,) (sigma mode; else ignored), features (S, C), ts (S,),
// packed_info (R, 2) int64 (start, count) rows sorted and non-overlapping, transmittance (R,) each
// ray's initial T -> features (R, C), opacity (R,), depth (R,), weights (S,), final T (R,).
// grad_deltas is (0,) in alpha mode.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_composite(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated by composite.cpp (rows of packed_info included).
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
PT3D_COMPOSITE_BACKENDS(cuda)
#endif
#undef PT3D_COMPOSITE_BACKENDS

}  // namespace pt3d_radnerf
