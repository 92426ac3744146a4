"""Integer helpers for occupancy grids: morton order and bitfield packing (no gradients)."""

import torch

from .._backend import custom_ops

_ops = custom_ops()


@torch.library.register_fake("pt3d_radnerf::morton3d")
def _morton3d_fake(coords):
    return coords.new_empty(coords.shape[0], dtype=torch.int32)


@torch.library.register_fake("pt3d_radnerf::morton3d_invert")
def _morton3d_invert_fake(codes):
    return codes.new_empty(codes.shape[0], 3, dtype=torch.int32)


@torch.library.register_fake("pt3d_radnerf::packbits")
def _packbits_fake(grid, threshold):
    return grid.new_empty(grid.numel() // 8, dtype=torch.uint8)


def morton3d(coords: torch.Tensor) -> torch.Tensor:
    """Morton (Z-order) codes of integer cell coordinates.

    Args:
        coords: (N, 3) integer tensor, each value in [0, 1024).

    Returns:
        (N,) int32 codes; bits interleave as ``... z1 y1 x1 z0 y0 x0``.
    """
    return _ops.morton3d(coords)


def morton3d_invert(codes: torch.Tensor) -> torch.Tensor:
    """Cell coordinates of morton codes: the inverse of :func:`morton3d`.

    Args:
        codes: (N,) integer tensor in [0, 2^30).

    Returns:
        (N, 3) int32 coordinates ``(x, y, z)``.
    """
    return _ops.morton3d_invert(codes)


def packbits(grid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Packs occupancy values into bytes: bit k of byte i is ``grid.flatten()[8i + k] > threshold``.

    Args:
        grid: float tensor of any shape with a multiple of 8 elements (e.g. (cascades, res^3)
            in morton order).
        threshold: occupancy threshold.

    Returns:
        (grid.numel() // 8,) uint8 bitfield (no gradient).
    """
    return _ops.packbits(grid.detach().contiguous(), float(threshold))
