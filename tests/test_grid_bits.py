"""morton3d / morton3d_invert / packbits: kernels vs independent bitwise twins."""

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda


def test_morton_known_values():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0, 0], [1023, 1023, 1023]], dtype=torch.int32)
    want = [0, 1, 2, 4, 7, 8, (1 << 30) - 1]
    assert ops.morton3d(coords).tolist() == want


def test_morton_matches_reference_and_round_trips():
    coords = torch.randint(0, 1024, (50000, 3), dtype=torch.int32)
    codes = ops.morton3d(coords)
    assert torch.equal(codes, reference.morton3d(coords))
    assert torch.equal(ops.morton3d_invert(codes), coords)
    assert torch.equal(reference.morton3d_invert(codes), coords)


def test_morton_is_a_bijection_on_a_128_grid():
    r = torch.arange(128, dtype=torch.int32)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).view(-1, 3)
    codes = ops.morton3d(grid)
    assert torch.equal(torch.sort(codes).values, torch.arange(128**3, dtype=torch.int32))


def test_morton_bad_input():
    with pytest.raises(ValueError, match=r"coords must lie in \[0, 1024\)"):
        ops.morton3d(torch.tensor([[1024, 0, 0]]))
    # int64 values are range-checked before the cast to int32 (2^32 + 5 must not become 5).
    with pytest.raises(ValueError, match=r"coords must lie in \[0, 1024\)"):
        ops.morton3d(torch.tensor([[2**32 + 5, 0, 0]]))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 2\^30\)"):
        ops.morton3d_invert(torch.tensor([2**32 + 5]))
    assert ops.morton3d(torch.tensor([[5, 1, 0]], dtype=torch.int64)).tolist() == [1 + 2 + 64]
    with pytest.raises(ValueError, match=r"coords must have shape \(N, 3\)"):
        ops.morton3d(torch.zeros(3, 2, dtype=torch.int32))
    with pytest.raises(TypeError, match="integer"):
        ops.morton3d(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="codes must lie in"):
        ops.morton3d_invert(torch.tensor([-1]))
    assert ops.morton3d(torch.zeros(0, 3, dtype=torch.int32)).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_packbits_matches_reference(dtype):
    grid = torch.rand(2, 64**3).to(dtype)
    grid[0, :100] = -1.0  # unseen cells never pass
    bits = ops.packbits(grid, 0.7)
    assert bits.dtype == torch.uint8 and bits.shape == (2 * 64**3 // 8,)
    assert torch.equal(bits, reference.packbits(grid, 0.7))
    # Unpack by hand: bit k of byte i is cell 8i + k.
    unpacked = ((bits[:, None].to(torch.int64) >> torch.arange(8)) & 1).bool().view(-1)
    assert torch.equal(unpacked, grid.reshape(-1) > 0.7)


def test_packbits_bad_input():
    with pytest.raises(ValueError, match="multiple of 8"):
        ops.packbits(torch.zeros(12), 0.5)
    with pytest.raises(TypeError, match="grid must be float"):
        ops.packbits(torch.zeros(16, dtype=torch.int32), 0.5)
    assert ops.packbits(torch.zeros(0), 0.5).shape == (0,)


@requires_cuda
def test_cuda_matches_cpu():
    coords = torch.randint(0, 1024, (10000, 3), dtype=torch.int32)
    assert torch.equal(ops.morton3d(coords.cuda()).cpu(), ops.morton3d(coords))
    codes = ops.morton3d(coords)
    assert torch.equal(ops.morton3d_invert(codes.cuda()).cpu(), coords)
    grid = torch.rand(8 * 1000)
    assert torch.equal(ops.packbits(grid.cuda(), 0.3).cpu(), ops.packbits(grid, 0.3))
