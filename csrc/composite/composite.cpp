// composite / composite_backward: schemas, input validation and the CPU/CUDA kernel registrations.
#include "composite/composite.h"

#include "common/checks.h"
#include "common/registration.h"

namespace pt3d_radnerf {
namespace {

// Every row (start, count) lies inside the S samples and rows are sorted and non-overlapping:
// start_r >= start_{r-1} + count_{r-1} (the layout of an exclusive prefix sum). The backward
// uses its output as per-ray scratch, so shared samples would race. Written without overflow
// (a start + count sum could wrap for hostile int64 values). CPU: one host loop over R rows;
// CUDA: the same rule asserted on the device (composite_cuda.cu), no host synchronisation.
void check_packed_rows(const at::Tensor& packed_info, int64_t S) {
  const int64_t R = packed_info.size(0);
  const int64_t* info = packed_info.data_ptr<int64_t>();
  for (int64_t r = 0; r < R; ++r) {
    const int64_t start = info[2 * r], count = info[2 * r + 1];
    TORCH_CHECK_VALUE(start >= 0 && count >= 0 && start <= S && count <= S - start,
                      "packed_info rows must satisfy 0 <= start, 0 <= count, start + count <= S (",
                      S, "), got row ", r, " = (", start, ", ", count, ")");
    if (r > 0) {
      const int64_t prev_start = info[2 * r - 2], prev_count = info[2 * r - 1];
      TORCH_CHECK_VALUE(start - prev_start >= prev_count,
                        "packed_info rows must be sorted and non-overlapping (start[r] >= "
                        "start[r-1] + count[r-1]), got row ", r - 1, " = (", prev_start, ", ",
                        prev_count, ") and row ", r, " = (", start, ", ", count, ")");
    }
  }
}

void check_inputs(const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
                  const at::Tensor& ts, const at::Tensor& packed_info,
                  const at::Tensor& transmittance, bool sigma_mode) {
  check_shape(values, "values", {-1}, "(S,)");
  const int64_t S = values.size(0);
  check_shape(features, "features", {S, -1}, "(S, C) with S of values");
  check_shape(ts, "ts", {S}, "(S,)");
  check_shape(packed_info, "packed_info", {-1, 2}, "(R, 2) = (start, count) per ray");
  check_shape(transmittance, "transmittance", {packed_info.size(0)},
              "(R,) with R = packed_info.shape[0]");
  if (sigma_mode) check_shape(deltas, "deltas", {S}, "(S,) in sigma mode");
  TORCH_CHECK_TYPE(values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble,
                   "values must be float32 or float64, got ", values.scalar_type());
  check_same_dtype(features, "features", values, "values");
  check_same_dtype(ts, "ts", values, "values");
  check_same_dtype(transmittance, "transmittance", values, "values");
  if (sigma_mode) check_same_dtype(deltas, "deltas", values, "values");
  check_dtype(packed_info, "packed_info", at::kLong);
  check_same_device(features, "features", values, "values");
  check_same_device(ts, "ts", values, "values");
  check_same_device(packed_info, "packed_info", values, "values");
  check_same_device(transmittance, "transmittance", values, "values");
  if (sigma_mode) check_same_device(deltas, "deltas", values, "values");
  check_contiguous(values, "values");
  check_contiguous(features, "features");
  check_contiguous(ts, "ts");
  check_contiguous(packed_info, "packed_info");
  check_contiguous(transmittance, "transmittance");
  if (sigma_mode) check_contiguous(deltas, "deltas");
  if (!packed_info.is_cuda()) check_packed_rows(packed_info, S);
}

void check_backward(const at::Tensor& grad_features, const at::Tensor& grad_opacity,
                    const at::Tensor& grad_depth, const at::Tensor& grad_transmittance,
                    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
                    const at::Tensor& ts, const at::Tensor& packed_info,
                    const at::Tensor& transmittance, bool sigma_mode) {
  check_inputs(values, deltas, features, ts, packed_info, transmittance, sigma_mode);
  const int64_t R = packed_info.size(0);
  check_shape(grad_features, "grad_features", {R, features.size(1)}, "(R, C)");
  check_shape(grad_opacity, "grad_opacity", {R}, "(R,)");
  check_shape(grad_depth, "grad_depth", {R}, "(R,)");
  check_shape(grad_transmittance, "grad_transmittance", {R}, "(R,)");
  for (const auto& [g, name] : {std::pair{&grad_features, "grad_features"},
                                std::pair{&grad_opacity, "grad_opacity"},
                                std::pair{&grad_depth, "grad_depth"},
                                std::pair{&grad_transmittance, "grad_transmittance"}}) {
    check_same_dtype(*g, name, values, "values");
    check_same_device(*g, name, values, "values");
    check_contiguous(*g, name);
  }
}

}  // namespace

void define_composite(torch::Library& m) {
  m.def("composite(Tensor values, Tensor deltas, Tensor features, Tensor ts, Tensor packed_info, "
        "Tensor transmittance, bool sigma_mode, float t_thresh, float eps) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("composite_backward(Tensor grad_features, Tensor grad_opacity, Tensor grad_depth, "
        "Tensor grad_transmittance, Tensor values, Tensor deltas, Tensor features, Tensor ts, "
        "Tensor packed_info, Tensor transmittance, bool sigma_mode, float t_thresh, float eps) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
}

// One macro per direction keeps the CPU and CUDA registrations identical but for the backend.
#define PT3D_COMPOSITE_FORWARD(BACKEND)                                                         \
  [](const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,           \
     const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,     \
     bool sigma_mode, double t_thresh, double eps) {                                           \
    check_inputs(values, deltas, features, ts, packed_info, transmittance, sigma_mode);        \
    return BACKEND(values, deltas, features, ts, packed_info, transmittance, sigma_mode,       \
                   t_thresh, eps);                                                             \
  }
#define PT3D_COMPOSITE_BACKWARD(BACKEND)                                                        \
  [](const at::Tensor& grad_features, const at::Tensor& grad_opacity,                          \
     const at::Tensor& grad_depth, const at::Tensor& grad_transmittance,                       \
     const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,           \
     const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,     \
     bool sigma_mode, double t_thresh, double eps) {                                           \
    check_backward(grad_features, grad_opacity, grad_depth, grad_transmittance, values,        \
                   deltas, features, ts, packed_info, transmittance, sigma_mode);              \
    return BACKEND(grad_features, grad_opacity, grad_depth, grad_transmittance, values,        \
                   deltas, features, ts, packed_info, transmittance, sigma_mode, t_thresh,     \
                   eps);                                                                       \
  }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("composite", PT3D_COMPOSITE_FORWARD(composite_forward_cpu));
  m.impl("composite_backward", PT3D_COMPOSITE_BACKWARD(composite_backward_cpu));
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "composite", PT3D_COMPOSITE_FORWARD(composite_forward_cuda));
  PT3D_CUDA_IMPL(m, "composite_backward", PT3D_COMPOSITE_BACKWARD(composite_backward_cuda));
}

}  // namespace pt3d_radnerf
