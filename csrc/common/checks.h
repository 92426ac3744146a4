// Input validation shared by every op's dispatch file.
//
// Messages always name the argument and say what was expected and what came in.
// Shape/value problems raise Python ValueError (TORCH_CHECK_VALUE), dtype problems
// raise TypeError (TORCH_CHECK_TYPE), so Python callers can catch them precisely.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

namespace pt3d_radnerf {

// Readable "(4, 3)" for error messages.
inline std::string shape_str(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) {
    s += std::to_string(t.size(i));
    if (i + 1 < t.dim()) s += ", ";
  }
  if (t.dim() == 1) s += ",";
  return s + ")";
}

inline void check_defined(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.defined(), name, " must be a tensor, got None");
}

// ndim must equal `ndim`; sizes >= 0 must match, -1 means "any".
inline void check_shape(const at::Tensor& t, const char* name,
                        std::initializer_list<int64_t> sizes,
                        const char* expected) {
  check_defined(t, name);
  bool ok = t.dim() == static_cast<int64_t>(sizes.size());
  int64_t i = 0;
  for (int64_t s : sizes) {
    if (!ok) break;
    if (s >= 0 && t.size(i) != s) ok = false;
    ++i;
  }
  TORCH_CHECK_VALUE(ok, name, " must have shape ", expected, ", got ", shape_str(t));
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble ||
                       t.scalar_type() == at::kHalf,
                   name, " must be float16, float32 or float64, got ", t.scalar_type());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, name, " must be ", dtype, ", got ",
                   t.scalar_type());
}

inline void check_same_dtype(const at::Tensor& t, const char* name, const at::Tensor& ref,
                             const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " must have the dtype of ",
                   ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on the device of ", ref_name,
                    " (", ref.device(), "), got ", t.device());
}

inline void check_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_contiguous(), name,
                    " must be contiguous (call .contiguous() before passing it)");
}

// rays_o, rays_d (N, 3) float32/float64, same dtype and device, contiguous; aabb (6,) a CPU tensor
// of their dtype (the box is six host values, so reading it never waits for a device), finite,
// with min <= max on every axis.
inline void check_rays_and_box(const at::Tensor& rays_o, const at::Tensor& rays_d,
                               const at::Tensor& aabb) {
  check_shape(rays_o, "rays_o", {-1, 3}, "(N, 3)");
  check_shape(rays_d, "rays_d", {rays_o.size(0), 3}, "(N, 3) with N of rays_o");
  check_shape(aabb, "aabb", {6}, "(6,) = (xmin, ymin, zmin, xmax, ymax, zmax)");
  TORCH_CHECK_TYPE(rays_o.scalar_type() == at::kFloat || rays_o.scalar_type() == at::kDouble,
                   "rays_o must be float32 or float64, got ", rays_o.scalar_type());
  check_same_dtype(rays_d, "rays_d", rays_o, "rays_o");
  check_same_dtype(aabb, "aabb", rays_o, "rays_o");
  check_same_device(rays_d, "rays_d", rays_o, "rays_o");
  TORCH_CHECK_VALUE(aabb.device().is_cpu(), "aabb must be a CPU tensor (six host values), got "
                    "device ", aabb.device(), " (pt3d_radnerf.ops.as_aabb converts)");
  check_contiguous(rays_o, "rays_o");
  check_contiguous(rays_d, "rays_d");
  check_contiguous(aabb, "aabb");
  double v[6];
  for (int k = 0; k < 6; ++k) {
    v[k] = aabb.scalar_type() == at::kFloat ? aabb.data_ptr<float>()[k] : aabb.data_ptr<double>()[k];
  }
  for (int k = 0; k < 3; ++k) {
    TORCH_CHECK_VALUE(std::isfinite(v[k]) && std::isfinite(v[k + 3]) && v[k] <= v[k + 3],
                      "aabb must be finite with min <= max on every axis, got (", v[0], ", ",
                      v[1], ", ", v[2], ", ", v[3], ", ", v[4], ", ", v[5], ")");
  }
}

}  // namespace pt3d_radnerf
