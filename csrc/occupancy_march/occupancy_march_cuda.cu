#include <ATen/Dispatch.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sub.h>

#include <cstdint>

#include "common/cuda_utils.cuh"
#include "occupancy_march/occupancy_march_math.h"
#include "occupancy_march/occupancy_march.h"

namespace pt3d_radnerf {
namespace {

// The empty-block summary for skipping: one thread per summary byte.
__global__ void march_summary_kernel(int64_t bytes, const uint8_t* __restrict__ bitfield,
                                     int64_t blocks, uint8_t* __restrict__ summary) {
  PT3D_CUDA_KERNEL_LOOP(b, bytes) { summary[b] = march_summary_byte(bitfield, b, blocks); }
}

// One thread per ray. `ends` null: count pass (an error code also lowers `status` to
// 4 * ray + |code|, so the smallest failing ray wins); else fill pass into
// [ends[i] - counts[i], ends[i]).
template <typename scalar_t>
__global__ void occupancy_march_kernel(int64_t n, const scalar_t* __restrict__ o,
                                       const scalar_t* __restrict__ d,
                                       const scalar_t* __restrict__ jitter,
                                       const scalar_t* __restrict__ ray_t_min,
                                       MarchParams<scalar_t> p, int64_t* __restrict__ counts,
                                       const int64_t* __restrict__ ends,
                                       scalar_t* __restrict__ t_starts,
                                       scalar_t* __restrict__ t_ends, int64_t* status) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    const scalar_t j = jitter != nullptr ? jitter[i] : scalar_t(0);
    const scalar_t t0 = ray_t_min != nullptr ? ray_t_min[i] : scalar_t(-INFINITY);
    if (ends == nullptr) {
      const int64_t c = march_ray(o + 3 * i, d + 3 * i, j, t0, p,
                                  SampleArrays<scalar_t>{nullptr, nullptr});
      counts[i] = c;
      if (c < 0) {
        atomicMin(reinterpret_cast<unsigned long long*>(status),
                  static_cast<unsigned long long>(4 * i - c));
      }
    } else {
      const int64_t start = ends[i] - counts[i];
      march_ray(o + 3 * i, d + 3 * i, j, t0, p,
                SampleArrays<scalar_t>{t_starts + start, t_ends + start});
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> occupancy_march_cuda(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& jitter,
    const at::Tensor& ray_t_min, const at::Tensor& aabb, const at::Tensor& bitfield,
    int64_t cascades, int64_t resolution, double t_min, double t_max, double dt_min,
    double dt_max, double dt_gamma, int64_t max_samples) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t n = rays_o.size(0);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions long_opts = rays_o.options().dtype(at::kLong);
  at::Tensor counts = at::empty({n}, long_opts);  // the count pass writes every ray
  at::Tensor status = at::full({1}, INT64_MAX, long_opts);  // no error
  at::Tensor ends, t_starts, t_ends;
  const at::Tensor aabb_host = aabb.cpu();  // 6 values: boxes are precomputed on the host
  at::Tensor summary;
  if (!march_skip_disabled() && march_summary_bytes(cascades, resolution) > 0) {
    const int64_t bytes = march_summary_bytes(cascades, resolution);
    summary = at::empty({bytes}, bitfield.options());
    march_summary_kernel<<<blocks_for(bytes), kThreadsPerBlock, 0, stream>>>(
        bytes, bitfield.data_ptr<uint8_t>(), cascades * resolution * resolution * resolution / 512,
        summary.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "occupancy_march_cuda", [&] {
    const MarchParams<scalar_t> p = make_march_params<scalar_t>(
        bitfield.data_ptr<uint8_t>(), summary.defined() ? summary.data_ptr<uint8_t>() : nullptr,
        aabb_host.data_ptr<scalar_t>(), cascades, resolution, t_min, t_max, dt_min, dt_max,
        dt_gamma, max_samples);
    const scalar_t* jit = jitter.defined() ? jitter.data_ptr<scalar_t>() : nullptr;
    const scalar_t* t0 = ray_t_min.defined() ? ray_t_min.data_ptr<scalar_t>() : nullptr;
    if (n > 0) {
      occupancy_march_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
          n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), jit, t0, p,
          counts.data_ptr<int64_t>(), nullptr, nullptr, nullptr, status.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    ends = at::cumsum(counts, 0);
    // The one host sync: the total and the error status come back together.
    const at::Tensor host = n > 0 ? at::cat({ends.slice(0, n - 1), status}).cpu() : status.cpu();
    const int64_t code = host[-1].item<int64_t>();
    TORCH_CHECK_VALUE(code == INT64_MAX, march_error_message(
        -(code % 4), code / 4, rays_o.scalar_type() == at::kFloat ? "float32" : "float64",
        dt_min, dt_max, dt_gamma));
    const int64_t total = n > 0 ? host[0].item<int64_t>() : 0;
    t_starts = at::empty({total}, rays_o.options());
    t_ends = at::empty({total}, rays_o.options());
    if (total > 0) {
      occupancy_march_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
          n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), jit, t0, p,
          counts.data_ptr<int64_t>(), ends.data_ptr<int64_t>(), t_starts.data_ptr<scalar_t>(),
          t_ends.data_ptr<scalar_t>(), nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  // output_size (spelled as an optional: a plain int64 would pick the (self, repeats) overload):
  // the total is known on the host, so repeat_interleave need not sync for it.
  const at::Tensor ray_indices = at::repeat_interleave(counts, std::optional<int64_t>(t_starts.size(0)));
  return {ray_indices, t_starts, t_ends, at::stack({at::sub(ends, counts), counts}, 1)};
}

}  // namespace pt3d_radnerf
