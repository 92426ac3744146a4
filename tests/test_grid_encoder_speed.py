"""The CPU grid-encoder kernels' chunked, prefetching sweeps and row-sliced table gradient: equal
to the pure-PyTorch twin across chunk boundaries at RAD-NeRF's sizes, and bitwise deterministic and
independent of the thread count (correctness only; timings live in benchmarks/bench_encoders.py)."""

import pytest
import torch

from pt3d_radnerf.models import HashGridEncoder
from pt3d_radnerf.ops import reference

N = 9000  # more than two 4096-point chunks, and a partial last chunk


def _twin(enc, x):
    return reference.grid_encode(x, enc.embeddings, enc.offsets, enc.scales, enc.gridtype,
                                 enc.align_corners, enc.interpolation, enc.bound)


def _fwd_bwd(enc, x, cot):
    x = x.detach().clone().requires_grad_(True)
    y = enc(x)
    gx, ge = torch.autograd.grad(y, [x, enc.embeddings], cot)
    return y.detach(), ge, gx


def _threads(n):
    class _Ctx:
        def __enter__(self):
            self.old = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)

    return _Ctx()


@pytest.mark.parametrize("dim,dtype", [(3, torch.float32), (2, torch.float64)])
def test_radnerf_grid_matches_twin(dim, dtype):
    """RAD-NeRF's grids (16 levels x 2, 2^16-row tiled tables up to 2048 per axis): features and
    both gradients equal the twin; points outside the bound contribute nothing."""
    enc = HashGridEncoder(dim, 16, 2, 16, 16, desired_resolution=2048, gridtype="tiled").to(dtype)
    with torch.no_grad():
        enc.embeddings.uniform_(-1, 1)
    x = torch.rand(N, dim, dtype=dtype) * 2.2 - 1.1  # ~10-30% of the points outside [-1, 1]
    cot = torch.randn(N, enc.output_dim, dtype=dtype)
    y, ge, gx = _fwd_bwd(enc, x, cot)
    x2 = x.clone().requires_grad_(True)
    y2 = _twin(enc, x2)
    gx2, ge2 = torch.autograd.grad(y2, [x2, enc.embeddings], cot)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(y, y2.detach(), **tol)
    torch.testing.assert_close(ge, ge2, **(tol if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-5)))
    # d/dx: float32 cancellation of level-scaled corner differences (see test_grid_encoder.py).
    torch.testing.assert_close(gx, gx2, **(tol if dtype == torch.float64 else dict(atol=1e-3, rtol=1e-3)))
    outside = (x.abs() > 1).any(-1)
    assert int(outside.sum()) > 500
    assert bool((y[outside] == 0).all()) and bool((gx[outside] == 0).all())


@pytest.mark.parametrize(
    "dim,gridtype,interpolation",
    [(3, "tiled", "linear"), (2, "hash", "smoothstep")],  # 3-D tiled: level 1 drops the z axis
)
def test_bitwise_deterministic_and_thread_count_independent(dim, gridtype, interpolation):
    """Two runs at 2 threads are bitwise equal, and so are runs at 1, 2 and 5 threads: with 2
    levels, 5 threads split each level's table gradient into 3 row slices."""
    enc = HashGridEncoder(dim, num_levels=2, level_dim=4, base_resolution=8, log2_hashmap_size=8,
                          per_level_scale=4.0, gridtype=gridtype, interpolation=interpolation)
    with torch.no_grad():
        enc.embeddings.uniform_(-1, 1)
    x = torch.rand(N, dim) * 2.2 - 1.1
    cot = torch.randn(N, enc.output_dim)
    with _threads(1):
        ref = _fwd_bwd(enc, x, cot)
    for threads in (2, 2, 5):
        with _threads(threads):
            got = _fwd_bwd(enc, x, cot)
        for a, b in zip(got, ref):
            assert torch.equal(a, b), threads
    big = HashGridEncoder(3, 16, 2, 16, 16, desired_resolution=2048, gridtype="tiled")
    with torch.no_grad():
        big.embeddings.uniform_(-1, 1)
    x3 = torch.rand(N, 3) * 2 - 1
    cot3 = torch.randn(N, big.output_dim)
    with _threads(2):
        first, second = _fwd_bwd(big, x3, cot3), _fwd_bwd(big, x3, cot3)
    with _threads(1):
        single = _fwd_bwd(big, x3, cot3)
    for a, b, c in zip(first, second, single):
        assert torch.equal(a, b) and torch.equal(a, c)
