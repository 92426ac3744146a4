#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "common/cuda_utils.cuh"
#include "composite/composite_math.h"
#include "composite/composite.h"

namespace pt3d_radnerf {
namespace {

// packed_info rows, checked on the device instead of with a host-synchronising reduction (a
// failure is a device-side assert, as in PyTorch's indexing): the same rule as the CPU check
// in composite.cpp (packed_info_rows_valid), written overflow-free.
__device__ __forceinline__ void assert_ray_in_range(const int64_t* info, int64_t r, int64_t S) {
  const int64_t start = info[2 * r], count = info[2 * r + 1];
  CUDA_KERNEL_ASSERT(start >= 0 && count >= 0 && start <= S && count <= S - start);
  // Sorted, non-overlapping rows (the backward uses its output as per-ray scratch).
  CUDA_KERNEL_ASSERT(r == 0 || start - info[2 * r - 2] >= info[2 * r - 1]);
}

// One thread per ray: each ray is a sequential front-to-back loop (deterministic, no atomics).
template <typename scalar_t>
__global__ void composite_forward_kernel(int64_t R, int64_t S, int64_t C, const scalar_t* __restrict__ v,
                                         const scalar_t* __restrict__ d,
                                         const scalar_t* __restrict__ f,
                                         const scalar_t* __restrict__ t,
                                         const int64_t* __restrict__ info, bool sigma_mode,
                                         scalar_t t_thresh, scalar_t eps,
                                         const scalar_t* __restrict__ tin, scalar_t* of,
                                         scalar_t* oo, scalar_t* od, scalar_t* ot, scalar_t* w) {
  PT3D_CUDA_KERNEL_LOOP(r, R) {
    assert_ray_in_range(info, r, S);
    composite_ray_forward<scalar_t>(v, d, f, t, info[2 * r], info[2 * r + 1], C, sigma_mode,
                                    t_thresh, eps, tin[r], of + r * C, oo + r, od + r, ot + r, w);
  }
}

template <typename scalar_t>
__global__ void composite_backward_kernel(int64_t R, int64_t S, int64_t C, const scalar_t* __restrict__ gf,
                                          const scalar_t* __restrict__ go,
                                          const scalar_t* __restrict__ gd,
                                          const scalar_t* __restrict__ gt,
                                          const scalar_t* __restrict__ v,
                                          const scalar_t* __restrict__ d,
                                          const scalar_t* __restrict__ f,
                                          const scalar_t* __restrict__ t,
                                          const int64_t* __restrict__ info, bool sigma_mode,
                                          scalar_t t_thresh, scalar_t eps,
                                          const scalar_t* __restrict__ tin, scalar_t* gv,
                                          scalar_t* gdl, scalar_t* gfi, scalar_t* gti) {
  PT3D_CUDA_KERNEL_LOOP(r, R) {
    assert_ray_in_range(info, r, S);
    gti[r] = composite_ray_backward<scalar_t>(gf + r * C, go[r], gd[r], gt[r], v, d, f, t,
                                              info[2 * r], info[2 * r + 1], C, sigma_mode,
                                              t_thresh, eps, tin[r], gv, gdl, gfi);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cuda(
    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
    const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,
    bool sigma_mode, double t_thresh, double eps) {
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t R = packed_info.size(0), C = features.size(1);
  at::Tensor out_feat = at::empty({R, C}, features.options());
  at::Tensor opacity = at::empty({R}, features.options());
  at::Tensor depth = at::empty({R}, features.options());
  at::Tensor trans_out = at::empty({R}, features.options());
  at::Tensor weights = at::zeros({values.size(0)}, features.options());
  if (R == 0) return {out_feat, opacity, depth, weights, trans_out};
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "composite_forward_cuda", [&] {
    composite_forward_kernel<scalar_t><<<blocks_for(R), kThreadsPerBlock, 0,
                                         at::cuda::getCurrentCUDAStream()>>>(
        R, values.size(0), C, values.data_ptr<scalar_t>(), sigma_mode ? deltas.data_ptr<scalar_t>() : nullptr,
        features.data_ptr<scalar_t>(), ts.data_ptr<scalar_t>(), packed_info.data_ptr<int64_t>(),
        sigma_mode, static_cast<scalar_t>(t_thresh), static_cast<scalar_t>(eps),
        transmittance.data_ptr<scalar_t>(), out_feat.data_ptr<scalar_t>(),
        opacity.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), trans_out.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out_feat, opacity, depth, weights, trans_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_backward_cuda(
    const at::Tensor& grad_features, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const at::Tensor& grad_transmittance, const at::Tensor& values, const at::Tensor& deltas,
    const at::Tensor& features, const at::Tensor& ts, const at::Tensor& packed_info,
    const at::Tensor& transmittance, bool sigma_mode, double t_thresh, double eps) {
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t R = packed_info.size(0), C = features.size(1);
  at::Tensor grad_values = at::zeros_like(values);
  at::Tensor grad_deltas = sigma_mode ? at::zeros_like(values) : at::empty({0}, values.options());
  at::Tensor grad_feats = at::zeros_like(features);
  at::Tensor grad_trans = at::empty_like(transmittance);
  if (R == 0) return {grad_values, grad_deltas, grad_feats, grad_trans};
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "composite_backward_cuda", [&] {
    composite_backward_kernel<scalar_t><<<blocks_for(R), kThreadsPerBlock, 0,
                                          at::cuda::getCurrentCUDAStream()>>>(
        R, values.size(0), C, grad_features.data_ptr<scalar_t>(), grad_opacity.data_ptr<scalar_t>(),
        grad_depth.data_ptr<scalar_t>(), grad_transmittance.data_ptr<scalar_t>(),
        values.data_ptr<scalar_t>(),
        sigma_mode ? deltas.data_ptr<scalar_t>() : nullptr, features.data_ptr<scalar_t>(),
        ts.data_ptr<scalar_t>(), packed_info.data_ptr<int64_t>(), sigma_mode,
        static_cast<scalar_t>(t_thresh), static_cast<scalar_t>(eps),
        transmittance.data_ptr<scalar_t>(), grad_values.data_ptr<scalar_t>(),
        sigma_mode ? grad_deltas.data_ptr<scalar_t>() : nullptr, grad_feats.data_ptr<scalar_t>(),
        grad_trans.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_values, grad_deltas, grad_feats, grad_trans};
}

}  // namespace pt3d_radnerf
