// morton3d / morton3d_invert: Z-order codes of integer cell coordinates and back.
//
//   pt3d_radnerf::morton3d(Tensor coords) -> Tensor codes
//       coords (N, 3) any integer dtype, values in [0, 1024) -> codes int32 (N,)
//   pt3d_radnerf::morton3d_invert(Tensor codes) -> Tensor coords
//       codes (N,) any integer dtype, values in [0, 2^30) -> coords int32 (N, 3)
// Values are range-checked in their own dtype before the cast to int32.
#pragma once

#include <ATen/core/Tensor.h>

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_morton3d(torch::Library& m);  // schemas; called from ext.cpp

// Backends: int32 inputs, validated by morton3d.cpp.
at::Tensor morton3d_cpu(const at::Tensor& coords);
at::Tensor morton3d_invert_cpu(const at::Tensor& codes);
#ifdef WITH_CUDA
at::Tensor morton3d_cuda(const at::Tensor& coords);
at::Tensor morton3d_invert_cuda(const at::Tensor& codes);
#endif

}  // namespace pt3d_radnerf
