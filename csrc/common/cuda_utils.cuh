// Launch helpers for the CUDA side of every op (included from .cu files only).
//
// Light ATen headers on purpose: <torch/extension.h> would pull pybind11 and the
// whole frontend into every nvcc translation unit and double CI build time.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace pt3d_radnerf {

constexpr int kThreadsPerBlock = 256;

// Blocks for a 1-D launch over n elements, capped so grid-stride loops cover the rest.
inline int blocks_for(int64_t n, int threads = kThreadsPerBlock) {
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = 65535LL * 16;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace pt3d_radnerf

// Grid-stride loop over [0, n).
#define PT3D_CUDA_KERNEL_LOOP(i, n)                                                    \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
