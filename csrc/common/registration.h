// Helpers for registering the ops with the PyTorch dispatcher (included from <op>.cpp only).
//
// Every op is a torch.library custom op in the namespace `pt3d_radnerf`: ext.cpp's
// TORCH_LIBRARY block calls each op's define_<op>(m) (its schemas); each <op>.cpp registers
// its CPU kernel and, in CUDA builds, its CUDA kernel with TORCH_LIBRARY_IMPL, so the dispatcher
// picks the device. Meta/fake kernels and autograd formulas are registered from Python
// (pt3d_radnerf/ops/*.py: torch.library.register_fake / register_autograd).
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace pt3d_radnerf {

// The CUDA kernel of every op in a CPU-only build: one clear message instead of the
// dispatcher's "could not run ... with arguments from the 'CUDA' backend".
inline void built_without_cuda_kernel(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK_VALUE(false, op.schema().name(),
                    ": got CUDA tensors but pt3d_radnerf was built without CUDA. Rebuild with "
                    "a CUDA toolkit (FORCE_CUDA=1 pip install --no-build-isolation .) or move "
                    "the inputs to the CPU.");
}

}  // namespace pt3d_radnerf

// PT3D_CUDA_IMPL(m, "op", kernel): registers `kernel` for the CUDA key in CUDA builds. In CPU-only
// builds the kernel expression is dropped unseen (it names *_cuda backends that do not exist) and
// built_without_cuda_kernel takes its place.
#ifdef WITH_CUDA
#define PT3D_CUDA_IMPL(m, name, ...) (m).impl(name, __VA_ARGS__)
#else
#define PT3D_CUDA_IMPL(m, name, ...) \
  (m).impl(name, torch::CppFunction::makeFromBoxedFunction<&::pt3d_radnerf::built_without_cuda_kernel>())
#endif
