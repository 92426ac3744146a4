// Helpers for the multithreaded CPU loops (at::parallel_for over all cores).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

namespace pt3d_radnerf {

// Grain sizes: elements per task below which threading costs more than it saves.
constexpr int64_t kGrainCheap = 4096;   // a few flops per element
constexpr int64_t kGrainHeavy = 256;    // a ray march or a multi-level lookup per element

// Runs body(i) for every i in [0, n) on all intra-op threads.
template <typename Body>
inline void parallel_for_each(int64_t n, int64_t grain, const Body& body) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

}  // namespace pt3d_radnerf
