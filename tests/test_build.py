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


def test_every_op_is_registered_with_the_dispatcher():
    # CPU kernels for all, CUDA kernels (or the "built without CUDA" stub) for all, and a Meta
    # kernel from the Python fake registration: torch.compile and shape propagation work.
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pt3d_radnerf::")]
    assert len(names) == 12
    for name in names:
        for key in ("CPU", "CUDA", "Meta"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(name, key), (name, key)


def test_meta_tensors_propagate_shapes():
    o = torch.empty(4, 3, device="meta")
    near, far, hit = ops.near_far_from_aabb(o, o, [-1, -1, -1, 1, 1, 1])
    assert near.device.type == "meta" and near.shape == (4,) and hit.dtype == torch.bool


@requires_cuda
def test_mixed_devices_are_named():
    o = torch.zeros(4, 3, device="cuda")
    op = torch.ops.pt3d_radnerf.near_far_from_aabb
    with pytest.raises(ValueError, match="rays_d must be on the device of rays_o"):
        op(o, o.cpu(), torch.zeros(6), 0.0)
    with pytest.raises(ValueError, match="aabb must be a CPU tensor"):
        op(o, o, torch.zeros(6, device="cuda"), 0.0)


@requires_cuda
def test_cuda_tensors_without_cuda_build_raise_clearly():
    o = torch.zeros(4, 3, device="cuda")
    if pt3d_radnerf.cuda_compiled():
        near, far, hit = ops.near_far_from_aabb(o, o + 1, [-1, -1, -1, 1, 1, 1])
        assert near.is_cuda
    else:
        with pytest.raises(ValueError, match="built without CUDA"):
            ops.near_far_from_aabb(o, o + 1, [-1, -1, -1, 1, 1, 1])
