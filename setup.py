"""Builds pt3d_radnerf and its one C++/CUDA extension, pt3d_radnerf._C.

Environment switches:
  PT3D_RADNERF_NO_CUDA=1   CPU-only build even where a CUDA toolkit is found.
  FORCE_CUDA=1             compile the CUDA kernels even without a visible GPU (CI does this).
  TORCH_CUDA_ARCH_LIST     GPU architectures, e.g. "9.0" (see DEFAULT_CUDA_ARCHS for the default).
  MAX_JOBS                 parallel compile jobs (torch's ninja backend).

setup.py imports torch, so install with `pip install --no-build-isolation .`.
PyTorch3D is deliberately not a requirement: install `easypytorch3d==0.7.9.post1` or your own
PyTorch3D build (see README).
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - message for users only
    sys.exit(
        "pt3d_radnerf: setup.py needs torch installed first. Install torch, then run\n"
        "  pip install --no-build-isolation .\n"
        "(pip's build isolation hides the installed torch from setup.py)."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")

# Built when no GPU is visible and TORCH_CUDA_ARCH_LIST is unset: Turing to Hopper, plus PTX
# for newer GPUs to JIT from. With a visible GPU torch picks that GPU's architecture itself.
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def _flag(name):
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def _use_cuda():
    if _flag("PT3D_RADNERF_NO_CUDA"):
        return False
    if _flag("FORCE_CUDA"):
        if CUDA_HOME is None:
            sys.exit("pt3d_radnerf: FORCE_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME).")
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


def _nvidia_wheel_includes():
    """torch's CUDA headers include cusparse.h & co, which the pip wheels keep here."""
    dirs = []
    for base in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cuda_runtime/include"):
            path = os.path.join(base, sub)
            if os.path.isdir(path) and path not in dirs:
                dirs.append(path)
    return dirs


def _extension():
    sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    define_macros = []
    # -fopenmp: at::parallel_for is header code that runs `#pragma omp parallel` in *our*
    # translation units; without the flag every CPU kernel silently runs on one thread.
    # libgomp.so.1 resolves to the copy torch already loaded (same soname).
    cxx_flags = ["-O3", "-g0", "-std=c++17", "-fopenmp"]
    extra = {"cxx": cxx_flags}
    if _use_cuda():
        sources += sorted(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
        define_macros.append(("WITH_CUDA", None))
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        extra["nvcc"] = [
            "-O3",
            "-std=c++17",
            "--expt-relaxed-constexpr",
            "-DWITH_CUDA",
        ] + os.environ.get("NVCC_FLAGS", "").split()
        ext_cls = CUDAExtension
        print(
            f"pt3d_radnerf: building with CUDA ({len([s for s in sources if s.endswith('.cu')])}"
            f" .cu files, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', 'auto')})"
        )
    else:
        ext_cls = CppExtension
        print("pt3d_radnerf: building CPU-only (CUDA tensors will raise 'built without CUDA')")
    return ext_cls(
        name="pt3d_radnerf._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, CSRC)] + _nvidia_wheel_includes(),
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )


setup(
    name="pt3d_radnerf",
    version="0.1.0",
    description="RAD-NeRF style audio-driven talking-head radiance fields for PyTorch3D",
    packages=find_packages(include=["pt3d_radnerf", "pt3d_radnerf.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "tqdm", "imageio", "imageio-ffmpeg", "iopath", "fvcore"],
    extras_require={"test": ["pytest"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
