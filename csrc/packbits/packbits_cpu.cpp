#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "common/cpu_utils.h"
#include "packbits/packbits.h"
#include "packbits/packbits_math.h"

namespace pt3d_radnerf {

at::Tensor packbits_cpu(const at::Tensor& grid, double threshold) {
  const int64_t n = grid.numel() / 8;
  at::Tensor bitfield = at::empty({n}, grid.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(grid.scalar_type(), "packbits_cpu", [&] {
    const scalar_t* g = grid.data_ptr<scalar_t>();
    uint8_t* out = bitfield.data_ptr<uint8_t>();
    const scalar_t t = static_cast<scalar_t>(threshold);
    parallel_for_each(n, kGrainCheap, [&](int64_t i) { out[i] = pack_byte(g + 8 * i, t); });
  });
  return bitfield;
}

}  // namespace pt3d_radnerf
