// packbits: input validation and CPU/CUDA dispatch.
#include "common/checks.h"
#include "ops.h"

namespace pt3d_radnerf {

at::Tensor packbits(const at::Tensor& grid, double threshold) {
  check_defined(grid, "grid");
  check_floating(grid, "grid");
  check_supported_device(grid, "grid");
  check_contiguous(grid, "grid");
  TORCH_CHECK_VALUE(grid.numel() % 8 == 0, "grid must have a multiple of 8 cells, got ",
                    grid.numel(), " (shape ", shape_str(grid), ")");
  if (grid.is_cuda()) {
#ifdef WITH_CUDA
    return packbits_cuda(grid, threshold);
#else
    fail_built_without_cuda("packbits");
#endif
  }
  return packbits_cpu(grid, threshold);
}

}  // namespace pt3d_radnerf
