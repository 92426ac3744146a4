// packbits: schema, input validation and the CPU/CUDA kernel registrations.
#include "packbits/packbits.h"

#include "common/checks.h"
#include "common/registration.h"

namespace pt3d_radnerf {
namespace {

void check_grid(const at::Tensor& grid) {
  check_defined(grid, "grid");
  check_floating(grid, "grid");
  check_contiguous(grid, "grid");
  TORCH_CHECK_VALUE(grid.numel() % 8 == 0, "grid must have a multiple of 8 cells, got ",
                    grid.numel(), " (shape ", shape_str(grid), ")");
}

}  // namespace

void define_packbits(torch::Library& m) { m.def("packbits(Tensor grid, float threshold) -> Tensor"); }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("packbits", [](const at::Tensor& grid, double threshold) {
    check_grid(grid);
    return packbits_cpu(grid, threshold);
  });
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "packbits", [](const at::Tensor& grid, double threshold) {
    check_grid(grid);
    return packbits_cuda(grid, threshold);
  });
}

}  // namespace pt3d_radnerf
