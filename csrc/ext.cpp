// The one Python module of the package: pt3d_radnerf._C.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops.h"

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
  namespace p = pt3d_radnerf;
  m.doc() = "pt3d_radnerf C++/CUDA kernels (see pt3d_radnerf.ops for the Python API)";
  m.def("with_cuda", &with_cuda, "True when the extension was compiled with CUDA kernels");
  m.def("parallel_for_threads", &parallel_for_threads, py::arg("tasks"),
        "Threads at::parallel_for used for `tasks` tasks (1 when built without OpenMP)");

  m.def("near_far_from_aabb", &p::near_far_from_aabb, py::arg("rays_o"), py::arg("rays_d"),
        py::arg("aabb"), py::arg("min_near"));
  m.def("near_far_from_aabb_backward", &p::near_far_from_aabb_backward, py::arg("grad_near"),
        py::arg("grad_far"), py::arg("rays_o"), py::arg("rays_d"), py::arg("aabb"),
        py::arg("min_near"));
  m.def("morton3d", &p::morton3d, py::arg("coords"));
  m.def("morton3d_invert", &p::morton3d_invert, py::arg("codes"));
  m.def("packbits", &p::packbits, py::arg("grid"), py::arg("threshold"));
  m.def("composite_forward", &p::composite_forward, py::arg("values"), py::arg("deltas"),
        py::arg("features"), py::arg("ts"), py::arg("packed_info"), py::arg("transmittance"),
        py::arg("sigma_mode"), py::arg("t_thresh"), py::arg("eps"));
  m.def("composite_backward", &p::composite_backward, py::arg("grad_features"),
        py::arg("grad_opacity"), py::arg("grad_depth"), py::arg("grad_transmittance"),
        py::arg("values"), py::arg("deltas"), py::arg("features"), py::arg("ts"),
        py::arg("packed_info"), py::arg("transmittance"), py::arg("sigma_mode"),
        py::arg("t_thresh"), py::arg("eps"));

  // ---- grid_encode / sh_encode
  m.def("grid_encode", &p::grid_encode, py::arg("inputs"), py::arg("embeddings"),
        py::arg("offsets"), py::arg("scales"), py::arg("gridtype"), py::arg("align_corners"),
        py::arg("interpolation"), py::arg("bound"));
  m.def("grid_encode_backward", &p::grid_encode_backward, py::arg("grad_out"), py::arg("inputs"),
        py::arg("embeddings"), py::arg("offsets"), py::arg("scales"), py::arg("gridtype"),
        py::arg("align_corners"), py::arg("interpolation"), py::arg("bound"),
        py::arg("input_grad"));
  m.def("sh_encode", &p::sh_encode, py::arg("dirs"), py::arg("degree"));
  m.def("sh_encode_backward", &p::sh_encode_backward, py::arg("grad_out"), py::arg("dirs"),
        py::arg("degree"));

  // ---- occupancy_march
  m.def("occupancy_march", &p::occupancy_march, py::arg("rays_o"), py::arg("rays_d"),
        py::arg("jitter"), py::arg("ray_t_min"), py::arg("aabb"), py::arg("bitfield"),
        py::arg("cascades"), py::arg("resolution"), py::arg("t_min"), py::arg("t_max"),
        py::arg("dt_min"), py::arg("dt_max"), py::arg("dt_gamma"), py::arg("max_samples"));
}
