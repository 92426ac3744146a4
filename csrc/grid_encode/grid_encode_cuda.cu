// grid_encode on CUDA. Forward: one thread per (point, level), levels on blockIdx.y so one
// level's table is hot in cache. Embedding backward: same layout, scattered with float32
// atomicAdd into a float32 buffer (cast to the embeddings' dtype at the end), so float16
// tables need no half atomics and no architecture guard; the summation order, hence the last
// bits, may change from run to run. Input backward: one thread per point looping over levels
// (deterministic).
//
// Instantiations kept lean: forward <emb float|half, D, C> (16); both backward kernels read
// float32 only (float16 grads/tables are cast first) <D, C> (8 each).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Half.h>

#include "common/cuda_utils.cuh"
#include "grid_encode/grid_encode_math.h"
#include "grid_encode/grid_encode.h"

namespace pt3d_radnerf {
namespace {

// float16 tables use c10::Half: its float conversions work although torch builds with
// __CUDA_NO_HALF_CONVERSIONS__.
using Half = c10::Half;

template <typename E, int D, int C>
__global__ void grid_forward_kernel(int64_t n, const float* __restrict__ x,
                                    const E* __restrict__ emb, const GridLevels g,
                                    E* __restrict__ out) {
  const int level = blockIdx.y;
  const int64_t L = g.num_levels;
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    float acc[C];
    grid_forward_level<float, E, D, C>(x + i * D, emb, g, level, acc);
#pragma unroll
    for (int c = 0; c < C; ++c) out[(i * L + level) * C + c] = static_cast<E>(acc[c]);
  }
}

template <int C>
struct AtomicAddRow {
  float* grad_emb;
  const float* grad_out;
  __device__ void operator()(uint32_t row, float w) {
    float* dst = grad_emb + static_cast<int64_t>(row) * C;
#pragma unroll
    for (int c = 0; c < C; ++c) atomicAdd(dst + c, w * grad_out[c]);
  }
};

template <int D, int C>
__global__ void grid_backward_kernel(int64_t n, const float* __restrict__ x, const GridLevels g,
                                     const float* __restrict__ grad_out,
                                     float* __restrict__ grad_emb) {
  const int level = blockIdx.y;
  const int64_t L = g.num_levels;
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    AtomicAddRow<C> sink{grad_emb, grad_out + (i * L + level) * C};
    grid_backward_level<float, D>(x + i * D, g, level, sink);
  }
}

template <int D, int C>
__global__ void grid_input_backward_kernel(int64_t n, const float* __restrict__ x,
                                           const float* __restrict__ emb, const GridLevels g,
                                           const float* __restrict__ grad_out,
                                           float* __restrict__ grad_x) {
  const int64_t L = g.num_levels;
  PT3D_CUDA_KERNEL_LOOP(i, n) {
    float acc[D];
#pragma unroll
    for (int d = 0; d < D; ++d) acc[d] = 0.f;
    for (int level = 0; level < L; ++level) {
      grid_input_backward_level<float, float, D, C>(x + i * D, emb, g, level,
                                                    grad_out + (i * L + level) * C, acc);
    }
#pragma unroll
    for (int d = 0; d < D; ++d) grad_x[i * D + d] = acc[d];
  }
}

dim3 level_grid(int64_t n, int levels) {
  return dim3(static_cast<unsigned>(blocks_for(n)), static_cast<unsigned>(levels));
}

}  // namespace

at::Tensor grid_encode_cuda(const at::Tensor& inputs, const at::Tensor& embeddings,
                            const GridLevels& g) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  const int64_t n = inputs.size(0);
  at::Tensor out = at::empty({n, g.num_levels * embeddings.size(1)}, embeddings.options());
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch_grid_dims(inputs.size(1), embeddings.size(1), [&](auto d_, auto c_) {
    constexpr int D = decltype(d_)::value;
    constexpr int C = decltype(c_)::value;
    if (embeddings.scalar_type() == at::kHalf) {
      grid_forward_kernel<Half, D, C><<<level_grid(n, g.num_levels), kThreadsPerBlock, 0,
                                        stream>>>(n, inputs.data_ptr<float>(),
                                                  embeddings.data_ptr<Half>(), g,
                                                  out.data_ptr<Half>());
    } else {
      grid_forward_kernel<float, D, C><<<level_grid(n, g.num_levels), kThreadsPerBlock, 0,
                                         stream>>>(n, inputs.data_ptr<float>(),
                                                   embeddings.data_ptr<float>(), g,
                                                   out.data_ptr<float>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& inputs,
                                                             const at::Tensor& embeddings,
                                                             const GridLevels& g,
                                                             bool input_grad) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  const int64_t n = inputs.size(0);
  at::Tensor grad_emb32 = at::zeros(embeddings.sizes(), embeddings.options().dtype(at::kFloat));
  at::Tensor grad_x = input_grad ? at::zeros_like(inputs) : at::Tensor();
  if (n > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    const at::Tensor go = grad_out.to(at::kFloat).contiguous();
    const at::Tensor emb = input_grad ? embeddings.to(at::kFloat).contiguous() : at::Tensor();
    dispatch_grid_dims(inputs.size(1), embeddings.size(1), [&](auto d_, auto c_) {
      constexpr int D = decltype(d_)::value;
      constexpr int C = decltype(c_)::value;
      grid_backward_kernel<D, C><<<level_grid(n, g.num_levels), kThreadsPerBlock, 0, stream>>>(
          n, inputs.data_ptr<float>(), g, go.data_ptr<float>(), grad_emb32.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (input_grad) {
        grid_input_backward_kernel<D, C><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
            n, inputs.data_ptr<float>(), emb.data_ptr<float>(), g, go.data_ptr<float>(),
            grad_x.data_ptr<float>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  }
  at::Tensor grad_emb =
      embeddings.scalar_type() == at::kFloat ? grad_emb32 : grad_emb32.to(embeddings.scalar_type());
  return {grad_emb, grad_x};
}

}  // namespace pt3d_radnerf
