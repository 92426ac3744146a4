// grid_encode: schemas, input validation, the per-level layout (host) and the CPU/CUDA kernel
// registrations.
#include "grid_encode/grid_encode.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <string>

#include "common/checks.h"
#include "common/registration.h"

namespace pt3d_radnerf {
namespace {

// Builds the per-level layout passed to the kernels; validates the level description.
GridLevels make_levels(int64_t dim, int64_t table_rows, c10::ArrayRef<int64_t> offsets,
                       c10::ArrayRef<double> scales, c10::string_view gridtype,
                       bool align_corners, c10::string_view interpolation, double bound) {
  TORCH_CHECK_VALUE(gridtype == "hash" || gridtype == "tiled",
                    "gridtype must be 'hash' or 'tiled', got '", std::string(gridtype), "'");
  TORCH_CHECK_VALUE(interpolation == "linear" || interpolation == "smoothstep",
                    "interpolation must be 'linear' or 'smoothstep', got '",
                    std::string(interpolation), "'");
  TORCH_CHECK_VALUE(std::isfinite(bound) && bound > 0, "bound must be finite and > 0, got ",
                    bound);
  const int64_t levels = static_cast<int64_t>(scales.size());
  TORCH_CHECK_VALUE(levels >= 1 && levels <= kGridMaxLevels, "scales must hold 1 to ",
                    kGridMaxLevels, " levels, got ", levels);
  TORCH_CHECK_VALUE(static_cast<int64_t>(offsets.size()) == levels + 1,
                    "offsets must hold num_levels + 1 = ", levels + 1, " values, got ",
                    offsets.size());
  TORCH_CHECK_VALUE(offsets[0] == 0, "offsets[0] must be 0, got ", offsets[0]);
  TORCH_CHECK_VALUE(offsets[levels] == table_rows, "offsets[-1] must equal embeddings.shape[0] (",
                    table_rows, "), got ", offsets[levels]);
  TORCH_CHECK_VALUE(table_rows < (int64_t(1) << 31), "embeddings has too many rows (",
                    table_rows, "); at most 2^31 - 1");
  GridLevels g{};
  g.num_levels = static_cast<int32_t>(levels);
  g.align_corners = align_corners;
  g.smoothstep = interpolation == "smoothstep";
  g.bound = bound;
  g.inv_extent = 1.0 / (2.0 * bound);
  const bool hash = gridtype == "hash";
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t size = offsets[l + 1] - offsets[l];
    TORCH_CHECK_VALUE(size >= 1, "offsets must be strictly increasing, got offsets[", l,
                      "] = ", offsets[l], " and offsets[", l + 1, "] = ", offsets[l + 1]);
    const double scale = scales[l];
    TORCH_CHECK_VALUE(std::isfinite(scale) && scale >= 0 && scale < 1e7,
                      "scales must be finite, >= 0 and < 1e7, got scales[", l, "] = ", scale);
    g.offset[l] = static_cast<uint32_t>(offsets[l]);
    g.size[l] = static_cast<uint32_t>(size);
    g.scale[l] = scale;
    // torch-ngp: resolution = ceil(scale) + 1 vertices per axis (+1 more without align_corners);
    // dimensions are added to the dense index while the running stride fits the table.
    const uint64_t per_axis = static_cast<uint64_t>(std::ceil(scale)) + (align_corners ? 1 : 2);
    uint64_t stride = 1;
    for (int64_t d = 0; d < kGridMaxDim; ++d) {
      if (d < dim && stride <= static_cast<uint64_t>(size)) {
        g.stride[l][d] = static_cast<uint32_t>(stride);
        stride *= per_axis;
      } else {
        g.stride[l][d] = 0;
      }
    }
    g.hashed[l] = hash && stride > static_cast<uint64_t>(size);
  }
  return g;
}

void check_grid_tensors(const at::Tensor& inputs, const at::Tensor& embeddings) {
  check_shape(inputs, "inputs", {-1, -1}, "(N, D) with D in {2, 3}");
  TORCH_CHECK_VALUE(inputs.size(1) == 2 || inputs.size(1) == 3,
                    "inputs must have shape (N, D) with D in {2, 3}, got ", shape_str(inputs));
  check_shape(embeddings, "embeddings", {-1, -1}, "(rows, C) with C in {1, 2, 4, 8}");
  const int64_t c = embeddings.size(1);
  TORCH_CHECK_VALUE(c == 1 || c == 2 || c == 4 || c == 8,
                    "embeddings must have shape (rows, C) with C in {1, 2, 4, 8}, got ",
                    shape_str(embeddings));
  check_same_device(embeddings, "embeddings", inputs, "inputs");
  if (inputs.is_cuda()) {
    check_dtype(inputs, "inputs", at::kFloat);
    TORCH_CHECK_TYPE(embeddings.scalar_type() == at::kFloat ||
                         embeddings.scalar_type() == at::kHalf,
                     "embeddings must be float32 or float16 on CUDA, got ",
                     embeddings.scalar_type());
  } else {
    TORCH_CHECK_TYPE(inputs.scalar_type() == at::kFloat || inputs.scalar_type() == at::kDouble,
                     "inputs must be float32 or float64 on CPU, got ", inputs.scalar_type());
    check_same_dtype(embeddings, "embeddings", inputs, "inputs");
  }
  check_contiguous(inputs, "inputs");
  check_contiguous(embeddings, "embeddings");
}

// The forward's validated level layout.
GridLevels checked_levels(const at::Tensor& inputs, const at::Tensor& embeddings,
                          c10::ArrayRef<int64_t> offsets, c10::ArrayRef<double> scales,
                          c10::string_view gridtype, bool align_corners,
                          c10::string_view interpolation, double bound) {
  check_grid_tensors(inputs, embeddings);
  return make_levels(inputs.size(1), embeddings.size(0), offsets, scales, gridtype, align_corners,
                     interpolation, bound);
}

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& inputs,
                    const at::Tensor& embeddings, const GridLevels& g) {
  check_shape(grad_out, "grad_out", {inputs.size(0), g.num_levels * embeddings.size(1)},
              "(N, num_levels * C)");
  check_same_dtype(grad_out, "grad_out", embeddings, "embeddings");
  check_same_device(grad_out, "grad_out", inputs, "inputs");
  check_contiguous(grad_out, "grad_out");
}

// The backends leave grad_inputs undefined without input_grad; the op returns (0,) instead.
std::tuple<at::Tensor, at::Tensor> defined_grads(std::tuple<at::Tensor, at::Tensor> grads,
                                                 const at::Tensor& inputs) {
  if (!std::get<1>(grads).defined()) std::get<1>(grads) = at::empty({0}, inputs.options());
  return grads;
}

}  // namespace

void define_grid_encode(torch::Library& m) {
  m.def("grid_encode(Tensor inputs, Tensor embeddings, int[] offsets, float[] scales, "
        "str gridtype, bool align_corners, str interpolation, float bound) -> Tensor");
  m.def("grid_encode_backward(Tensor grad_out, Tensor inputs, Tensor embeddings, int[] offsets, "
        "float[] scales, str gridtype, bool align_corners, str interpolation, float bound, "
        "bool input_grad) -> (Tensor, Tensor)");
}

#define PT3D_GRID_ENCODE(BACKEND)                                                               \
  [](const at::Tensor& inputs, const at::Tensor& embeddings, c10::ArrayRef<int64_t> offsets,   \
     c10::ArrayRef<double> scales, c10::string_view gridtype, bool align_corners,              \
     c10::string_view interpolation, double bound) {                                           \
    const GridLevels g = checked_levels(inputs, embeddings, offsets, scales, gridtype,         \
                                        align_corners, interpolation, bound);                  \
    return BACKEND(inputs, embeddings, g);                                                     \
  }
#define PT3D_GRID_ENCODE_BACKWARD(BACKEND)                                                      \
  [](const at::Tensor& grad_out, const at::Tensor& inputs, const at::Tensor& embeddings,       \
     c10::ArrayRef<int64_t> offsets, c10::ArrayRef<double> scales, c10::string_view gridtype,  \
     bool align_corners, c10::string_view interpolation, double bound, bool input_grad) {      \
    const GridLevels g = checked_levels(inputs, embeddings, offsets, scales, gridtype,         \
                                        align_corners, interpolation, bound);                  \
    check_grad_out(grad_out, inputs, embeddings, g);                                           \
    return defined_grads(BACKEND(grad_out, inputs, embeddings, g, input_grad), inputs);        \
  }

TORCH_LIBRARY_IMPL(pt3d_radnerf, CPU, m) {
  m.impl("grid_encode", PT3D_GRID_ENCODE(grid_encode_cpu));
  m.impl("grid_encode_backward", PT3D_GRID_ENCODE_BACKWARD(grid_encode_backward_cpu));
}

TORCH_LIBRARY_IMPL(pt3d_radnerf, CUDA, m) {
  PT3D_CUDA_IMPL(m, "grid_encode", PT3D_GRID_ENCODE(grid_encode_cuda));
  PT3D_CUDA_IMPL(m, "grid_encode_backward", PT3D_GRID_ENCODE_BACKWARD(grid_encode_backward_cuda));
}

}  // namespace pt3d_radnerf
