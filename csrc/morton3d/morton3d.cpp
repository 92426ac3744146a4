// morton3d / morton3d_invert: schemas, input validation and the CPU/CUDA kernel registrations.
#include "morton3d/morton3d.h"

#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/registration.h"
#include "morton3d/morton3d_math.h"

namespace pt3d_radnerf {
namespace {

// Integer values in [0, hi], checked in their own dtype (a cast first would wrap 2^32 + 5 to 5),
// then cast to the kernels' int32. CPU: ValueError. CUDA: an asynchronous device assert (no host
// synchronisation per call).
at::Tensor checked_int32(const at::Tensor& t, const char* name, int64_t hi, const char* range) {
  TORCH_CHECK_TYPE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), name,
                   " must be an integer tensor, got ", t.scalar_type());
  if (t.numel() > 0) {
    const at::Tensor bad = ((t < 0) | (t > hi)).any();
    if (t.is_cuda()) {
      at::_assert_async(bad.logical_not(), std::string(name) + " must lie in " + range);
    } else {
      TORCH_CHECK_VALUE(!bad.item<bool>(), name, " must lie in ", range);
    }
  }
  return t.to(at::kInt).contiguous();
}

at::Tensor checked_coords(const at::Tensor& coords) {
  check_shape(coords, "coords", {-1, 3}, "(N, 3)");
  return checked_int32(coords, "coords", kMortonMaxCoord,
                       "[0, 1024) (10 bits per axis, resolution <= 1024)");
}

at::Tensor checked_codes(const at::Tensor& codes) {
  check_shape(codes, "codes", {-1}, "(N,)");
  return checked_int32(codes, "codes", (int64_t(1) << (3 * kMortonBitsPerAxis)) - 1, "[0, 2^30)");
}

}  // namespace

void define_morton3d(torch::Library& m) {
  m.def("morton3d(Tensor coords) -> Tensor");
  m.def("morton3d_invert(Tensor codes) -> Tensor");
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("morton3d", [](const at::Tensor& coords) { return morton3d_cpu(checked_coords(coords)); });
  m.impl("morton3d_invert",
         [](const at::Tensor& codes) { return morton3d_invert_cpu(checked_codes(codes)); });
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "morton3d",
                 [](const at::Tensor& coords) { return morton3d_cuda(checked_coords(coords)); });
  PT3D_CUDA_IMPL(m, "morton3d_invert",
                 [](const at::Tensor& codes) { return morton3d_invert_cuda(checked_codes(codes)); });
}

}  // namespace pt3d_radnerf
