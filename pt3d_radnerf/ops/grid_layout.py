"""Occupancy-grid layout: where cells are, which cell holds a point, which bit holds a cell.

Production helpers of :class:`pt3d_radnerf.renderer.OccupancyGrid` (no gradients). The layout is
the one :func:`pt3d_radnerf.ops.occupancy_march` reads: cascade ``c`` covers the base box scaled
by ``2^c`` about its centre, split into ``res^3`` cells; cell ``(x, y, z)`` of cascade ``c`` has
the flat index ``c * res^3 + morton(x, y, z)`` (the kernel's :func:`pt3d_radnerf.ops.morton3d`),
and the bitfield holds flat cell ``8 i + k`` in bit ``k`` of byte ``i``.
"""

from typing import Tuple

import torch

from .grid_bits import morton3d, morton3d_invert


def cascade_boxes(aabb: torch.Tensor, cascades: int,
                  resolution: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower corners, upper corners and cell sides, each (C, 3), of the cascades of the base box
    ``aabb`` (6,), with the kernel's arithmetic (centre -/+ half extent, side = 2 half / res)."""
    scale = torch.pow(2.0, torch.arange(cascades, dtype=aabb.dtype, device=aabb.device))[:, None]
    centre = (aabb[:3] + aabb[3:]) * 0.5
    half = (aabb[3:] - aabb[:3]) * 0.5 * scale
    return centre - half, centre + half, half * 2 / resolution


def cell_points(indices: torch.Tensor, aabb: torch.Tensor, cascades: int, resolution: int,
                offsets: torch.Tensor) -> torch.Tensor:
    """(M, 3) world points of flat cells ``indices`` (M,) at ``offsets`` (M, 3) in [0, 1) of
    the cell (0.5 = centre)."""
    n3 = resolution**3
    lo, _, side = cascade_boxes(aabb, cascades, resolution)
    c = torch.div(indices, n3, rounding_mode="floor")
    xyz = morton3d_invert((indices - c * n3).to(torch.int32)).to(aabb.dtype)
    return lo[c] + (xyz + offsets.to(aabb.dtype)) * side[c]


def point_cells(points: torch.Tensor, aabb: torch.Tensor, cascades: int,
                resolution: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flat index (N,) int64 of the finest-cascade cell holding each point (N, 3), and (N,) bool:
    the point lies in the outermost cascade (the index of a point outside is meaningless).

    The march's lookup for a step no wider than the finest cells (its ``dt`` rule only ever
    picks a coarser cascade for wider steps)."""
    lo, hi, side = cascade_boxes(aabb.to(points.dtype), cascades, resolution)
    inside = ((points[:, None, :] >= lo) & (points[:, None, :] <= hi)).all(-1)  # (N, C)
    # Finest containing cascade: the first True (cascades are nested); the outermost if none.
    c = torch.where(inside.any(-1), inside.to(torch.int8).argmax(-1), cascades - 1)
    cell = torch.floor((points - lo[c]) / side[c]).clamp(0, resolution - 1).to(torch.int32)
    return c * resolution**3 + morton3d(cell).long(), inside[:, -1]


def read_bits(bitfield: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the bits of flat cells ``indices`` (N,) int64 in ``bitfield`` (uint8)."""
    return ((bitfield[indices >> 3].long() >> (indices & 7)) & 1).bool()


def unpack_bits(bitfield: torch.Tensor) -> torch.Tensor:
    """(8 B,) bool of every cell of a (B,) uint8 bitfield (the inverse of ``packbits``)."""
    shifts = torch.arange(8, device=bitfield.device, dtype=torch.uint8)
    return ((bitfield[:, None] >> shifts) & 1).bool().reshape(-1)
