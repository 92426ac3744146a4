#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>

#include <algorithm>
#include <vector>

#include "common/cpu_utils.h"
#include "occupancy_march/occupancy_march_math.h"
#include "occupancy_march/occupancy_march.h"

namespace pt3d_radnerf {
namespace {

// march_ray output for one group of rays: samples appended in ray order.
template <typename T>
struct SampleBuffer {
  std::vector<T>* t_starts;
  std::vector<T>* t_ends;
  void operator()(int64_t, T t0, T t1) const {
    t_starts->push_back(t0);
    t_ends->push_back(t1);
  }
};

constexpr int64_t kRaysPerGroup = 256;  // rays marched into one buffer (one parallel task)

}  // namespace

// One march per ray (unlike the CUDA count + fill passes): each group of rays marches into its
// own buffer, then the groups are copied into place in ray order, so the layout is
// deterministic whatever the thread count.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_cpu(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,
    const at::Tensor& ray_t_min, const at::Tensor& aabb, const at::Tensor& bitfield,
    int64_t cascades, int64_t resolution, double t_min, double t_max, double dt_min,
    double dt_max, double dt_gamma, int64_t max_samples) {
  const int64_t n = rays_o.size(0);
  at::Tensor counts = at::empty({n}, rays_o.options().dtype(at::kLong));
  at::Tensor starts = at::empty({n}, rays_o.options().dtype(at::kLong));
  at::Tensor t_starts, t_ends;
  const at::Tensor aabb_host = aabb.cpu();  // 6 values: boxes are precomputed on the host
  // The empty-block summary for skipping (one bit per 8^3 cells; 4 KiB for 128^3).
  const uint8_t* bits = bitfield.data_ptr<uint8_t>();
  std::vector<uint8_t> summary;
  if (!march_skip_disabled()) {
    summary.resize(march_summary_bytes(cascades, resolution));
    const int64_t blocks = cascades * resolution * resolution * resolution / 512;
    parallel_for_each(static_cast<int64_t>(summary.size()), kGrainHeavy, [&](int64_t b) {
      summary[b] = march_summary_byte(bits, b, blocks);
    });
  }
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "occupancy_march_cpu", [&] {
    const MarchParams<scalar_t> p = make_march_params<scalar_t>(
        bits, summary.empty() ? nullptr : summary.data(), aabb_host.data_ptr<scalar_t>(),
        cascades, resolution, t_min, t_max, dt_min, dt_max, dt_gamma, max_samples);
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* jit = jitter.defined() ? jitter.data_ptr<scalar_t>() : nullptr;
    const scalar_t* t0 = ray_t_min.defined() ? ray_t_min.data_ptr<scalar_t>() : nullptr;
    const scalar_t no_start = -INFINITY;  // no per-ray start: max(box entry, t_min)
    int64_t* cnt = counts.data_ptr<int64_t>();
    const int64_t groups = (n + kRaysPerGroup - 1) / kRaysPerGroup;
    std::vector<std::vector<scalar_t>> group_starts(groups), group_ends(groups);
    parallel_for_each(groups, 1, [&](int64_t g) {
      const SampleBuffer<scalar_t> emit{&group_starts[g], &group_ends[g]};
      for (int64_t i = g * kRaysPerGroup; i < std::min(n, (g + 1) * kRaysPerGroup); ++i) {
        const size_t before = group_starts[g].size();
        cnt[i] = march_ray(o + 3 * i, d + 3 * i, jit ? jit[i] : scalar_t(0),
                           t0 ? t0[i] : no_start, p, emit);
        if (cnt[i] < 0) {  // an error code: drop what the ray emitted, report it below
          group_starts[g].resize(before);
          group_ends[g].resize(before);
        }
      }
    });
    for (int64_t i = 0; i < n; ++i) {
      TORCH_CHECK_VALUE(cnt[i] >= 0, march_error_message(
          cnt[i], i, rays_o.scalar_type() == at::kFloat ? "float32" : "float64", dt_min,
          dt_max, dt_gamma));
    }
    // Exclusive prefix sums: each ray's first slot and each group's first slot.
    int64_t* first = starts.data_ptr<int64_t>();
    std::vector<int64_t> group_first(groups + 1, 0);
    int64_t total = 0;
    for (int64_t i = 0; i < n; ++i) {
      first[i] = total;
      total += cnt[i];
      if ((i + 1) % kRaysPerGroup == 0 || i + 1 == n) group_first[i / kRaysPerGroup + 1] = total;
    }
    t_starts = at::empty({total}, rays_o.options());
    t_ends = at::empty({total}, rays_o.options());
    scalar_t* ts = t_starts.data_ptr<scalar_t>();
    scalar_t* te = t_ends.data_ptr<scalar_t>();
    parallel_for_each(groups, 16, [&](int64_t g) {
      std::copy(group_starts[g].begin(), group_starts[g].end(), ts + group_first[g]);
      std::copy(group_ends[g].begin(), group_ends[g].end(), te + group_first[g]);
    });
  });
  // output_size (spelled as an optional: a plain int64 would pick the (self, repeats) overload):
  // the total is known on the host, so repeat_interleave need not sync for it.
  const at::Tensor ray_indices = at::repeat_interleave(counts, std::optional<int64_t>(t_starts.size(0)));
  return {ray_indices, t_starts, t_ends, at::stack({starts, counts}, 1)};
}

}  // namespace pt3d_radnerf
