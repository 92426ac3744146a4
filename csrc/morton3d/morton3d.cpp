// morton3d / morton3d_invert: input validation and CPU/CUDA dispatch.
#include <ATen/ATen.h>

#include "common/checks.h"
#include "morton3d/morton3d_math.h"
#include "ops.h"

namespace pt3d_radnerf {

at::Tensor morton3d(const at::Tensor& coords) {
  check_shape(coords, "coords", {-1, 3}, "(N, 3)");
  check_dtype(coords, "coords", at::kInt);
  check_supported_device(coords, "coords");
  check_contiguous(coords, "coords");
  if (coords.numel() > 0) {
    TORCH_CHECK_VALUE(!((coords < 0) | (coords > kMortonMaxCoord)).any().item<bool>(),
                      "coords must lie in [0, ", kMortonMaxCoord,
                      "] (10 bits per axis, resolution <= 1024)");
  }
  if (coords.is_cuda()) {
#ifdef WITH_CUDA
    return morton3d_cuda(coords);
#else
    fail_built_without_cuda("morton3d");
#endif
  }
  return morton3d_cpu(coords);
}

at::Tensor morton3d_invert(const at::Tensor& codes) {
  check_shape(codes, "codes", {-1}, "(N,)");
  check_dtype(codes, "codes", at::kInt);
  check_supported_device(codes, "codes");
  check_contiguous(codes, "codes");
  if (codes.numel() > 0) {
    TORCH_CHECK_VALUE(!((codes < 0) | (codes >= (1 << (3 * kMortonBitsPerAxis)))).any().item<bool>(),
                      "codes must lie in [0, 2^30)");
  }
  if (codes.is_cuda()) {
#ifdef WITH_CUDA
    return morton3d_invert_cuda(codes);
#else
    fail_built_without_cuda("morton3d_invert");
#endif
  }
  return morton3d_invert_cpu(codes);
}

}  // namespace pt3d_radnerf
