// Host/device portability for the per-element math headers.
//
// Every op keeps its per-element math in csrc/<op>/<op>_math.h as PT3D_HD inline functions
// that include no torch header. The CPU loop (<op>_cpu.cpp) and the CUDA kernel (<op>_cuda.cu)
// both call them, so CPU tests exercise the exact arithmetic the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PT3D_HD __host__ __device__ __forceinline__
#else
#define PT3D_HD inline
#endif

namespace pt3d_radnerf {

template <typename T>
PT3D_HD bool is_finite(T x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

template <typename T>
PT3D_HD T floor_value(T x) {
#if defined(__CUDA_ARCH__)
  return floor(x);
#else
  return std::floor(x);
#endif
}

template <typename T>
PT3D_HD T sqrt_value(T x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

template <typename T>
PT3D_HD T clamp_value(T x, T lo, T hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

template <typename T>
PT3D_HD T min_value(T a, T b) {
  return a < b ? a : b;
}

template <typename T>
PT3D_HD T max_value(T a, T b) {
  return a > b ? a : b;
}

}  // namespace pt3d_radnerf
