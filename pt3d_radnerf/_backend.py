"""Loads the compiled extension pt3d_radnerf._C, with an actionable message when it is missing.

Importing _C registers every kernel with the PyTorch dispatcher as ``torch.ops.pt3d_radnerf.*``
(C++ ``TORCH_LIBRARY``); pt3d_radnerf.ops adds the fake (meta) and autograd registrations.
"""

import importlib

import torch  # loads libc10 / libtorch, which _C links against

_C = None
_IMPORT_ERROR = None


def load_extension():
    """Returns the compiled module ``pt3d_radnerf._C`` (imported once, then cached).

    Raises:
        ImportError: when the extension was not built or does not match the installed torch.
    """
    global _C, _IMPORT_ERROR
    if _C is not None:
        return _C
    try:
        _C = importlib.import_module("pt3d_radnerf._C")
    except ImportError as err:  # keep the cause: an ABI mismatch reads differently from "missing"
        _IMPORT_ERROR = err
        raise ImportError(
            "pt3d_radnerf's C++/CUDA extension (pt3d_radnerf._C) could not be imported: "
            f"{err}\nBuild it with `make setup` (or `pip install --no-build-isolation .`, or "
            "`python setup.py build_ext --inplace` in a checkout). An 'undefined symbol' error "
            "means it was built against another torch: rebuild after reinstalling torch."
        ) from err
    return _C


def cuda_compiled():
    """True when the extension contains the CUDA kernels."""
    return bool(load_extension().with_cuda())


def custom_ops():
    """``torch.ops.pt3d_radnerf``, after loading the extension that defines its ops."""
    load_extension()
    return torch.ops.pt3d_radnerf
