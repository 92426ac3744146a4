// Input validation shared by every op's dispatch file.
//
// Messages always name the argument and say what was expected and what came in.
// Shape/value problems raise Python ValueError (TORCH_CHECK_VALUE), dtype problems
// raise TypeError (TORCH_CHECK_TYPE), so Python callers can catch them precisely.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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

// Ops run on CPU tensors, or CUDA tensors when the extension was built with CUDA.
inline void check_supported_device(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device().is_cuda(), name,
                    " must be a CPU or CUDA tensor, got device ", t.device());
}

// The one message every op gives for a CUDA tensor in a CPU-only build.
[[noreturn]] inline void fail_built_without_cuda(const char* op) {
  TORCH_CHECK_VALUE(false, "pt3d_radnerf.", op,
                    ": got CUDA tensors but pt3d_radnerf was built without CUDA. Rebuild with "
                    "a CUDA toolkit (FORCE_CUDA=1 pip install --no-build-isolation .) or move "
                    "the inputs to the CPU.");
  throw;  // unreachable; keeps [[noreturn]] honest for compilers that miss TORCH_CHECK's throw
}

// rays_o, rays_d (N, 3) float32/float64 and aabb (6,): same dtype, device, contiguous.
inline void check_rays_and_box(const at::Tensor& rays_o, const at::Tensor& rays_d,
                               const at::Tensor& aabb) {
  check_shape(rays_o, "rays_o", {-1, 3}, "(N, 3)");
  check_shape(rays_d, "rays_d", {rays_o.size(0), 3}, "(N, 3) with N of rays_o");
  check_shape(aabb, "aabb", {6}, "(6,) = (xmin, ymin, zmin, xmax, ymax, zmax)");
  TORCH_CHECK_TYPE(rays_o.scalar_type() == at::kFloat || rays_o.scalar_type() == at::kDouble,
                   "rays_o must be float32 or float64, got ", rays_o.scalar_type());
  check_same_dtype(rays_d, "rays_d", rays_o, "rays_o");
  check_same_dtype(aabb, "aabb", rays_o, "rays_o");
  check_supported_device(rays_o, "rays_o");
  check_same_device(rays_d, "rays_d", rays_o, "rays_o");
  check_same_device(aabb, "aabb", rays_o, "rays_o");
  check_contiguous(rays_o, "rays_o");
  check_contiguous(rays_d, "rays_d");
  check_contiguous(aabb, "aabb");
}

}  // namespace pt3d_radnerf
