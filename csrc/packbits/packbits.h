// packbits: occupancy values -> bitfield (bit k of byte i is grid.flatten()[8 i + k] > threshold).
//
//   pt3d_radnerf::packbits(Tensor grid, float threshold) -> Tensor bitfield
//       grid float16/32/64, any shape with 8M elements -> bitfield uint8 (M,)
#pragma once

#include <ATen/core/Tensor.h>

namespace torch {
class Library;
}

namespace pt3d_radnerf {

void define_packbits(torch::Library& m);  // schemas; called from ext.cpp

// Backends: inputs validated by packbits.cpp.
at::Tensor packbits_cpu(const at::Tensor& grid, double threshold);
#ifdef WITH_CUDA
at::Tensor packbits_cuda(const at::Tensor& grid, double threshold);
#endif

}  // namespace pt3d_radnerf
