"""pt3d_radnerf: RAD-NeRF style audio-driven talking heads inside PyTorch3D's ImplicitRenderer.

The compiled extension is loaded on first use (``pt3d_radnerf._C``); importing the package
compiles nothing.
"""

from ._backend import cuda_compiled, load_extension

__version__ = "0.1.0"

__all__ = ["__version__", "cuda_compiled", "load_extension"]


def __getattr__(name):
    if name == "_C":
        return load_extension()
    raise AttributeError(f"module 'pt3d_radnerf' has no attribute {name!r}")
