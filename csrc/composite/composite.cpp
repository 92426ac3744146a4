// composite_forward / composite_backward: input validation and CPU/CUDA dispatch.
#include <ATen/ATen.h>

#include "common/checks.h"
#include "ops.h"

namespace pt3d_radnerf {
namespace {

void check_inputs(const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
                  const at::Tensor& ts, const at::Tensor& packed_info, bool sigma_mode) {
  check_shape(values, "values", {-1}, "(S,)");
  const int64_t S = values.size(0);
  check_shape(features, "features", {S, -1}, "(S, C) with S of values");
  check_shape(ts, "ts", {S}, "(S,)");
  check_shape(packed_info, "packed_info", {-1, 2}, "(R, 2) = (start, count) per ray");
  if (sigma_mode) check_shape(deltas, "deltas", {S}, "(S,) in sigma mode");
  TORCH_CHECK_TYPE(values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble,
                   "values must be float32 or float64, got ", values.scalar_type());
  check_same_dtype(features, "features", values, "values");
  check_same_dtype(ts, "ts", values, "values");
  if (sigma_mode) check_same_dtype(deltas, "deltas", values, "values");
  check_dtype(packed_info, "packed_info", at::kLong);
  check_supported_device(values, "values");
  check_same_device(features, "features", values, "values");
  check_same_device(ts, "ts", values, "values");
  check_same_device(packed_info, "packed_info", values, "values");
  if (sigma_mode) check_same_device(deltas, "deltas", values, "values");
  check_contiguous(values, "values");
  check_contiguous(features, "features");
  check_contiguous(ts, "ts");
  check_contiguous(packed_info, "packed_info");
  if (sigma_mode) check_contiguous(deltas, "deltas");
  // CPU: checked here. CUDA: the kernels assert each row on the device (as PyTorch's indexing
  // does), so no per-call host synchronisation.
  if (packed_info.numel() > 0 && !packed_info.is_cuda()) {
    const at::Tensor starts = packed_info.select(1, 0), counts = packed_info.select(1, 1);
    TORCH_CHECK_VALUE(((starts >= 0) & (counts >= 0) & (starts + counts <= S)).all().item<bool>(),
                      "packed_info rows must satisfy 0 <= start, 0 <= count, start + count <= S (",
                      S, ")");
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward(
    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
    const at::Tensor& ts, const at::Tensor& packed_info, bool sigma_mode, double t_thresh,
    double eps) {
  check_inputs(values, deltas, features, ts, packed_info, sigma_mode);
  if (values.is_cuda()) {
#ifdef WITH_CUDA
    return composite_forward_cuda(values, deltas, features, ts, packed_info, sigma_mode, t_thresh, eps);
#else
    fail_built_without_cuda("composite_forward");
#endif
  }
  return composite_forward_cpu(values, deltas, features, ts, packed_info, sigma_mode, t_thresh, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_backward(
    const at::Tensor& grad_features, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
    const at::Tensor& ts, const at::Tensor& packed_info, bool sigma_mode, double t_thresh,
    double eps) {
  check_inputs(values, deltas, features, ts, packed_info, sigma_mode);
  const int64_t R = packed_info.size(0);
  check_shape(grad_features, "grad_features", {R, features.size(1)}, "(R, C)");
  check_shape(grad_opacity, "grad_opacity", {R}, "(R,)");
  check_shape(grad_depth, "grad_depth", {R}, "(R,)");
  for (const auto* g : {&grad_features, &grad_opacity, &grad_depth}) {
    check_same_dtype(*g, "grad", values, "values");
    check_same_device(*g, "grad", values, "values");
    check_contiguous(*g, "grad");
  }
  if (values.is_cuda()) {
#ifdef WITH_CUDA
    return composite_backward_cuda(grad_features, grad_opacity, grad_depth, values, deltas,
                                   features, ts, packed_info, sigma_mode, t_thresh, eps);
#else
    fail_built_without_cuda("composite_backward");
#endif
  }
  return composite_backward_cpu(grad_features, grad_opacity, grad_depth, values, deltas, features,
                                ts, packed_info, sigma_mode, t_thresh, eps);
}

}  // namespace pt3d_radnerf
