// grid_encode: multiresolution grid features (instant-ngp / RAD-NeRF layout; math: grid_encode_math.h).
//
//   pt3d_radnerf::grid_encode(Tensor inputs, Tensor embeddings, int[] offsets, float[] scales,
//       str gridtype, bool align_corners, str interpolation, float bound) -> Tensor features
//   pt3d_radnerf::grid_encode_backward(Tensor grad_out, Tensor inputs, Tensor embeddings,
//       int[] offsets, float[] scales, str gridtype, bool align_corners, str interpolation,
//       float bound, bool input_grad) -> (Tensor grad_embeddings, Tensor grad_inputs)
// inputs (N, D) in [-bound, bound], embeddings (rows, C); offsets (L+1,) table rows per level,
// scales (L,) -> features (N, L*C) in the embeddings' dtype. grad_inputs is (0,) unless input_grad.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "grid_encode/grid_encode_math.h"

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_grid_encode(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated and the level layout built by grid_encode.cpp.
at::Tensor grid_encode_cpu(const at::Tensor& inputs, const at::Tensor& embeddings,
                           const GridLevels& g);
std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& inputs,
                                                            const at::Tensor& embeddings,
                                                            const GridLevels& g, bool input_grad);
#ifdef WITH_CUDA
at::Tensor grid_encode_cuda(const at::Tensor& inputs, const at::Tensor& embeddings,
                            const GridLevels& g);
std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& inputs,
                                                             const at::Tensor& embeddings,
                                                             const GridLevels& g,
                                                             bool input_grad);
#endif

}  // namespace pt3d_radnerf
