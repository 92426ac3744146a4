#include <ATen/Dispatch.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sub.h>

#include "common/cpu_utils.h"
#include "occupancy_march/occupancy_march_math.h"
#include "occupancy_march/occupancy_march.h"

namespace pt3d_radnerf {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_cpu(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,
    const at::Tensor& ray_t_min, const at::Tensor& aabb, const at::Tensor& bitfield,
    int64_t cascades, int64_t resolution, double t_min, double t_max, double dt_min,
    double dt_max, double dt_gamma, int64_t max_samples) {
  const int64_t n = rays_o.size(0);
  at::Tensor counts = at::empty({n}, rays_o.options().dtype(at::kLong));
  at::Tensor t_starts, t_ends;
  const at::Tensor aabb_host = aabb.cpu();  // 6 values: boxes are precomputed on the host
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "occupancy_march_cpu", [&] {
    const MarchParams<scalar_t> p = make_march_params<scalar_t>(
        bitfield.data_ptr<uint8_t>(), aabb_host.data_ptr<scalar_t>(), cascades, resolution, t_min,
        t_max, dt_min, dt_max, dt_gamma, max_samples);
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* jit = jitter.defined() ? jitter.data_ptr<scalar_t>() : nullptr;
    const scalar_t* t0 = ray_t_min.defined() ? ray_t_min.data_ptr<scalar_t>() : nullptr;
    const scalar_t no_start = -INFINITY;  // no per-ray start: max(box entry, t_min)
    int64_t* cnt = counts.data_ptr<int64_t>();
    // Pass 1: count.
    parallel_for_each(n, kGrainHeavy, [&](int64_t i) {
      cnt[i] = march_ray(o + 3 * i, d + 3 * i, jit ? jit[i] : scalar_t(0),
                         t0 ? t0[i] : no_start, p, static_cast<scalar_t*>(nullptr),
                         static_cast<scalar_t*>(nullptr));
    });
    // Exclusive prefix sum -> each ray's first slot; pass 2 re-marches into place.
    const at::Tensor ends = at::cumsum(counts, 0);
    const int64_t total = n > 0 ? ends[n - 1].item<int64_t>() : 0;
    const int64_t* end_ptr = ends.data_ptr<int64_t>();
    t_starts = at::empty({total}, rays_o.options());
    t_ends = at::empty({total}, rays_o.options());
    scalar_t* ts = t_starts.data_ptr<scalar_t>();
    scalar_t* te = t_ends.data_ptr<scalar_t>();
    parallel_for_each(n, kGrainHeavy, [&](int64_t i) {
      const int64_t start = end_ptr[i] - cnt[i];
      march_ray(o + 3 * i, d + 3 * i, jit ? jit[i] : scalar_t(0), t0 ? t0[i] : no_start, p,
                ts + start, te + start);
    });
  });
  const at::Tensor starts = at::sub(at::cumsum(counts, 0), counts);
  const at::Tensor ray_indices = at::repeat_interleave(counts);
  return {ray_indices, t_starts, t_ends, at::stack({starts, counts}, 1)};
}

}  // namespace pt3d_radnerf
