#include <ATen/ops/empty.h>

#include "common/cpu_utils.h"
#include "morton3d/morton3d_math.h"
#include "morton3d/morton3d.h"

namespace pt3d_radnerf {

at::Tensor morton3d_cpu(const at::Tensor& coords) {
  const int64_t n = coords.size(0);
  at::Tensor codes = at::empty({n}, coords.options());
  const int32_t* c = coords.data_ptr<int32_t>();
  int32_t* out = codes.data_ptr<int32_t>();
  parallel_for_each(n, kGrainCheap, [&](int64_t i) {
    out[i] = static_cast<int32_t>(morton3d_encode(c[3 * i], c[3 * i + 1], c[3 * i + 2]));
  });
  return codes;
}

at::Tensor morton3d_invert_cpu(const at::Tensor& codes) {
  const int64_t n = codes.size(0);
  at::Tensor coords = at::empty({n, 3}, codes.options());
  const int32_t* in = codes.data_ptr<int32_t>();
  int32_t* c = coords.data_ptr<int32_t>();
  parallel_for_each(n, kGrainCheap, [&](int64_t i) {
    uint32_t x, y, z;
    morton3d_decode(static_cast<uint32_t>(in[i]), &x, &y, &z);
    c[3 * i] = static_cast<int32_t>(x);
    c[3 * i + 1] = static_cast<int32_t>(y);
    c[3 * i + 2] = static_cast<int32_t>(z);
  });
  return coords;
}

}  // namespace pt3d_radnerf
