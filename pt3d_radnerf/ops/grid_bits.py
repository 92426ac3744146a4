"""Integer helpers for occupancy grids: morton order and bitfield packing (no gradients)."""

import torch

from .._backend import load_extension


def morton3d(coords: torch.Tensor) -> torch.Tensor:
    """Morton (Z-order) codes of integer cell coordinates.

    Args:
        coords: (N, 3) integer tensor, each value in [0, 1024).

    Returns:
        (N,) int32 codes; bits interleave as ``... z1 y1 x1 z0 y0 x0``.
    """
    if coords.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8):
        raise TypeError(f"coords must be an integer tensor, got {coords.dtype}")
    return load_extension().morton3d(coords.to(torch.int32).contiguous())


def morton3d_invert(codes: torch.Tensor) -> torch.Tensor:
    """Cell coordinates of morton codes: the inverse of :func:`morton3d`.

    Args:
        codes: (N,) integer tensor in [0, 2^30).

    Returns:
        (N, 3) int32 coordinates ``(x, y, z)``.
    """
    if codes.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"codes must be int32 or int64, got {codes.dtype}")
    return load_extension().morton3d_invert(codes.to(torch.int32).contiguous())


def packbits(grid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Packs occupancy values into bytes: bit k of byte i is ``grid.flatten()[8i + k] > threshold``.

    Args:
        grid: float tensor of any shape with a multiple of 8 elements (e.g. (cascades, res^3)
            in morton order).
        threshold: occupancy threshold.

    Returns:
        (grid.numel() // 8,) uint8 bitfield.
    """
    return load_extension().packbits(grid.contiguous(), float(threshold))
