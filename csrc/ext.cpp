// The one extension module, pt3d_radnerf._C: registers every op with the PyTorch dispatcher
// (torch.ops.pt3d_radnerf.*) and binds two build-introspection helpers with pybind11.
//
// Adding an op: its folder csrc/<op>/ (see README "Adding an op") and one define_<op>(m) line below.
#include <ATen/Parallel.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "composite/composite.h"
#include "grid_encode/grid_encode.h"
#include "morton3d/morton3d.h"
#include "near_far_from_aabb/near_far_from_aabb.h"
#include "occupancy_march/occupancy_march.h"
#include "packbits/packbits.h"
#include "sh_encode/sh_encode.h"

// Schemas of every op; each op's <op>.cpp registers its CPU and CUDA kernels.
TORCH_LIBRARY(pt3d_radnerf, m) {
  namespace p = pt3d_radnerf;
  p::define_near_far_from_aabb(m);
  p::define_morton3d(m);
  p::define_packbits(m);
  p::define_composite(m);
  p::define_occupancy_march(m);
  p::define_grid_encode(m);
  p::define_sh_encode(m);
}

namespace {

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Distinct threads at::parallel_for runs `tasks` one-element tasks on. at::parallel_for is
// header code compiled into this extension: without -fopenmp it silently runs serially (1).
int64_t parallel_for_threads(int64_t tasks) {
  std::vector<int> used(static_cast<size_t>(std::max(at::get_num_threads(), 1)), 0);
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    used[static_cast<size_t>(at::get_thread_num()) % used.size()] = 1;
  });
  return std::accumulate(used.begin(), used.end(), int64_t(0));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pt3d_radnerf C++/CUDA kernels, registered as torch.ops.pt3d_radnerf.* (see "
            "pt3d_radnerf.ops for the Python API)";
  m.def("with_cuda", &with_cuda, "True when the extension was compiled with CUDA kernels");
  m.def("parallel_for_threads", &parallel_for_threads, py::arg("tasks"),
        "Threads at::parallel_for used for `tasks` tasks (1 when built without OpenMP)");
}
