// sh_encode: real spherical harmonics of directions (math: sh_encode_math.h).
//
//   pt3d_radnerf::sh_encode(Tensor dirs, int degree) -> Tensor
//   pt3d_radnerf::sh_encode_backward(Tensor grad_out, Tensor dirs, int degree) -> Tensor grad_dirs
// dirs (N, 3) -> (N, degree^2); grad_out (N, degree^2) -> grad_dirs (N, 3).
#pragma once

#include <ATen/core/Tensor.h>

#include "sh_encode/sh_encode_math.h"

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_sh_encode(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated by sh_encode.cpp.
at::Tensor sh_encode_cpu(const at::Tensor& dirs, int degree, const ShNorm& norm);
at::Tensor sh_encode_backward_cpu(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                  const ShNorm& norm);
#ifdef WITH_CUDA
at::Tensor sh_encode_cuda(const at::Tensor& dirs, int degree, const ShNorm& norm);
at::Tensor sh_encode_backward_cuda(const at::Tensor& grad_out, const at::Tensor& dirs, int degree,
                                   const ShNorm& norm);
#endif

}  // namespace pt3d_radnerf
