#include <ATen/Dispatch.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sub.h>

#include "common/cuda_utils.cuh"
#include "occupancy_march/occupancy_march_math.h"
#include "occupancy_march/occupancy_march.h"

namespace pt3d_radnerf {
namespace {

// One thread per ray. `ends` null: count pass; else fill pass into [ends[i] - counts[i], ends[i]).
template <typename scalar_t>
__global__ void occupancy_march_kernel(int64_t n, const scalar_t* __restrict__ o,
                                       const scalar_t* __restrict__ d,
                                       const scalar_t* __restrict__ jitter,
                                       const scalar_t* __restrict__ ray_t_min,
                                       MarchParams<scalar_t> p, int64_t* __restrict__ counts,
                                       const int64_t* __restrict__ ends,
                                       scalar_t* __restrict__ t_starts,
                                       scalar_t* __restrict__ t_ends) {
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    const scalar_t j = jitter != nullptr ? jitter[i] : scalar_t(0);
    const scalar_t t0 = ray_t_min != nullptr ? ray_t_min[i] : scalar_t(-INFINITY);
    if (ends == nullptr) {
      counts[i] = march_ray(o + 3 * i, d + 3 * i, j, t0, p, static_cast<scalar_t*>(nullptr),
                            static_cast<scalar_t*>(nullptr));
    } else {
      const int64_t start = ends[i] - counts[i];
      march_ray(o + 3 * i, d + 3 * i, j, t0, p, t_starts + start, t_ends + start);
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
  at::Tensor counts = at::zeros({n}, rays_o.options().dtype(at::kLong));
  at::Tensor t_starts, t_ends;
  const at::Tensor aabb_host = aabb.cpu();  // 6 values: boxes are precomputed on the host
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "occupancy_march_cuda", [&] {
    const MarchParams<scalar_t> p = make_march_params<scalar_t>(
        bitfield.data_ptr<uint8_t>(), aabb_host.data_ptr<scalar_t>(), cascades, resolution, t_min,
        t_max, dt_min, dt_max, dt_gamma, max_samples);
    const scalar_t* jit = jitter.defined() ? jitter.data_ptr<scalar_t>() : nullptr;
    const scalar_t* t0 = ray_t_min.defined() ? ray_t_min.data_ptr<scalar_t>() : nullptr;
    if (n > 0) {
      occupancy_march_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
          n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), jit, t0, p,
          counts.data_ptr<int64_t>(), nullptr, nullptr, nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const at::Tensor ends = at::cumsum(counts, 0);
    const int64_t total = n > 0 ? ends[n - 1].item<int64_t>() : 0;  // the one host sync
    t_starts = at::empty({total}, rays_o.options());
    t_ends = at::empty({total}, rays_o.options());
    if (total > 0) {
      occupancy_march_kernel<scalar_t><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
          n, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), jit, t0, p,
          counts.data_ptr<int64_t>(), ends.data_ptr<int64_t>(), t_starts.data_ptr<scalar_t>(),
          t_ends.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  const at::Tensor starts = at::sub(at::cumsum(counts, 0), counts);
  const at::Tensor ray_indices = at::repeat_interleave(counts);
  return {ray_indices, t_starts, t_ends, at::stack({starts, counts}, 1)};
}

}  // namespace pt3d_radnerf
