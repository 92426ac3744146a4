"""The extension loads, reports its build, and refuses tensors it cannot handle clearly."""

import pytest
import torch

import pt3d_radnerf
from pt3d_radnerf import ops

from .conftest import requires_cuda


def test_extension_loads():
    C = pt3d_radnerf._C
    assert C.__name__ == "pt3d_radnerf._C"
    assert isinstance(pt3d_radnerf.cuda_compiled(), bool)


def test_cpu_kernels_run_multithreaded():
    # The CPU kernels parallelise with at::parallel_for, which only spreads work over threads
    # when the extension itself is compiled with OpenMP (setup.py's -fopenmp).
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert pt3d_radnerf._C.parallel_for_threads(64) == 2
    finally:
        torch.set_num_threads(before)


def test_unsupported_device_is_named():
    # 'meta' tensors stand in for any device the kernels do not run on.
    o = torch.empty(4, 3, device="meta")
    with pytest.raises(ValueError, match="rays_o must be a CPU or CUDA tensor"):
        pt3d_radnerf._C.near_far_from_aabb(o, o, torch.empty(6, device="meta"), 0.0)


def test_mixed_devices_are_named():
    o = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="rays_d must be on the device of rays_o"):
        pt3d_radnerf._C.near_far_from_aabb(o, o.to("meta"), torch.zeros(6), 0.0)


@requires_cuda
def test_cuda_tensors_without_cuda_build_raise_clearly():
    o = torch.zeros(4, 3, device="cuda")
    if pt3d_radnerf.cuda_compiled():
        near, far, hit = ops.near_far_from_aabb(o, o + 1, [-1, -1, -1, 1, 1, 1])
        assert near.is_cuda
    else:
        with pytest.raises(ValueError, match="built without CUDA"):
            ops.near_far_from_aabb(o, o + 1, [-1, -1, -1, 1, 1, 1])
