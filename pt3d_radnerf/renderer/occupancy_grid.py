"""OccupancyGrid: a multi-cascade binary occupancy grid over an axis-aligned box.

Layout (shared with ``pt3d_radnerf.ops.occupancy_march``): cascade ``c`` covers the base box
scaled by ``2^c`` about its centre, split into ``res^3`` cells in morton order; the flat cell index
is ``c * res^3 + morton(x, y, z)`` and the bitfield holds cell ``8 i + k`` in bit ``k`` of byte ``i``.

Occupancy values are optical thicknesses: ``sigma(x) * step_size`` for a random point ``x`` in the
cell, where ``step_size`` is the metric marching step (default ``sqrt(3) * longest side / res``,
i.e. ``2 sqrt(3) / 128`` for RAD-NeRF's box). A value of 0.01 means one step there absorbs ~1%.
Cells no training camera sees hold -1 and are never updated or occupied.
"""

import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from .. import ops
from ..ops import reference


def _unpack(bitfield: torch.Tensor) -> torch.Tensor:
    """uint8 (B,) -> bool (8 B,), cell 8 i + k = bit k of byte i."""
    shifts = torch.arange(8, device=bitfield.device, dtype=torch.int64)
    return ((bitfield[:, None].long() >> shifts) & 1).bool().reshape(-1)


class OccupancyGrid(nn.Module):
    """Binary occupancy of ``cascades`` nested grids of ``resolution^3`` cells.

    Args:
        aabb: base box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` (non-cubic allowed).
        resolution: cells per axis per cascade, a power of two (default 128).
        cascades: number of nested grids, each doubling the extent (default 1).
        step_size: metric step the occupancy values are scaled by (default
            ``sqrt(3) * longest side / resolution``); also the raysampler's default ``dt_min``.
        update_every: :meth:`update` does work only when ``step % update_every == 0``.
        warmup_steps: before this step every cell is evaluated; afterwards 1/4 of the cells at
            random plus the occupied ones.
        decay: ``grid = max(grid * decay, new)`` on evaluated cells.
        threshold: a cell is occupied when its value exceeds ``min(mean, threshold)``.
        dilation: 6-neighbour dilation iterations applied to the bitfield after each update.

    Buffers (saved in ``state_dict``, moved by ``.to()``): ``aabb`` (6,), ``density``
    (cascades, res^3) float32 in morton order, ``bitfield`` (cascades * res^3 / 8,) uint8.
    A fresh grid is fully occupied, so sampling works before the first update.
    """

    def __init__(
        self,
        aabb: Sequence[float] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0),
        resolution: int = 128,
        cascades: int = 1,
        step_size: Optional[float] = None,
        update_every: int = 16,
        warmup_steps: int = 256,
        decay: float = 0.95,
        threshold: float = 0.01,
        dilation: int = 0,
    ) -> None:
        super().__init__()
        if resolution < 2 or resolution > 1024 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two in [2, 1024], got {resolution}")
        if not 1 <= cascades <= 16:
            raise ValueError(f"cascades must be in [1, 16], got {cascades}")
        box = ops.as_aabb(aabb, torch.zeros(0))
        if bool((box[3:] <= box[:3]).any()):
            raise ValueError(f"aabb needs min < max on every axis, got {box.tolist()}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        self.resolution = int(resolution)
        self.cascades = int(cascades)
        extent = float((box[3:] - box[:3]).max())
        self.step_size = float(step_size) if step_size else math.sqrt(3) * extent / resolution
        self.update_every = int(update_every)
        self.warmup_steps = int(warmup_steps)
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.dilation = int(dilation)
        n = self.cascades * self.resolution**3
        self.register_buffer("aabb", box)
        self.register_buffer("density", torch.zeros(self.cascades, self.resolution**3))
        self.register_buffer("bitfield", torch.full((n // 8,), 255, dtype=torch.uint8))

    # ---- queries ----------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return self.cascades * self.resolution**3

    @property
    def occupancy_fraction(self) -> float:
        """Fraction of occupied cells over all cascades."""
        return float(_unpack(self.bitfield).float().mean())

    def occupied(self) -> torch.Tensor:
        """(cascades, res^3) bool occupancy, morton order."""
        return _unpack(self.bitfield).view(self.cascades, -1)

    def set_occupancy(self, occupied: torch.Tensor) -> None:
        """Overwrites the bitfield from (cascades, res^3) bool in morton order (tests, tools)."""
        occupied = occupied.reshape(self.cascades, -1).to(self.bitfield.device)
        self.bitfield.copy_(ops.packbits(occupied.float(), 0.5))

    def cell_points(self, indices: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        """(M, 3) world points in flat cells ``indices`` (M,): random inside, or centres."""
        n3 = self.resolution**3
        lo, _, cs = reference.cascade_boxes(self.aabb, self.cascades, self.resolution)
        c = indices // n3
        xyz = ops.morton3d_invert((indices % n3).to(torch.int32))
        offset = torch.rand_like(lo[c]) if jitter else torch.full_like(lo[c], 0.5)
        return lo[c] + (xyz.to(lo.dtype) + offset) * cs[c]

    def is_occupied(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the finest cascade cell containing each (N, 3) point is occupied
        (False outside the outermost cascade)."""
        box = self.aabb.to(points.dtype)
        lo, hi, _ = reference.cascade_boxes(box, self.cascades, self.resolution)
        inside = ((points >= lo[-1]) & (points <= hi[-1])).all(-1)
        dt = points.new_zeros(points.shape[0])
        idx = reference.occupancy_cell_index(points, dt, box, self.cascades, self.resolution)
        return _unpack(self.bitfield)[idx] & inside

    # ---- updates ----------------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        step: int,
        *,
        chunk: int = 1 << 16,
    ) -> bool:
        """instant-ngp / nerfacc update policy; returns True when the grid changed.

        Args:
            density_fn: (N, 3) world points -> (N,) (or (N, 1)) densities sigma >= 0.
            step: the training step; work happens only every ``update_every`` steps, evaluating
                every cell before ``warmup_steps`` and 1/4 random + occupied cells after.
        """
        if step % self.update_every != 0:
            return False
        n3 = self.resolution**3
        dev = self.density.device
        if step < self.warmup_steps:
            indices = torch.arange(self.n_cells, device=dev)
        else:
            picked = []
            occupied = self.occupied()
            for c in range(self.cascades):
                rand = torch.randint(0, n3, (n3 // 4,), device=dev)
                occ = occupied[c].nonzero()[:, 0]
                if occ.numel() > n3 // 4:
                    occ = occ[torch.randint(0, occ.numel(), (n3 // 4,), device=dev)]
                picked.append(torch.cat([rand, occ]) + c * n3)
            indices = torch.cat(picked)
        values = torch.empty(indices.shape[0], device=dev)
        for s in range(0, indices.shape[0], chunk):
            pts = self.cell_points(indices[s : s + chunk])
            sigma = density_fn(pts).reshape(-1)
            if sigma.shape[0] != pts.shape[0]:
                raise ValueError(
                    f"density_fn must return one value per point: got {tuple(sigma.shape)} "
                    f"for {pts.shape[0]} points"
                )
            values[s : s + chunk] = sigma.float() * self.step_size
        self.density.copy_(ops.decayed_max_update(self.density, indices, values, self.decay))
        self.refresh_bitfield()
        return True

    @torch.no_grad()
    def refresh_bitfield(self) -> None:
        """Re-thresholds ``density`` at ``min(mean, threshold)`` (+ optional dilation)."""
        thre = ops.occupancy_threshold(self.density, self.threshold)
        bits = self.density > thre
        if self.dilation > 0:
            bits = ops.dilate_occupancy(bits, self.resolution, self.dilation) & (self.density >= 0)
        self.bitfield.copy_(ops.packbits(bits.float(), 0.5))

    @torch.no_grad()
    def mark_unseen(
        self,
        cameras,
        image_size: Union[Sequence[int], torch.Tensor],
        near_plane: float = 0.0,
        chunk: int = 1 << 15,
    ) -> int:
        """Marks cells whose centre no camera sees (-1: never updated, never occupied).

        Args:
            cameras: PyTorch3D cameras (batch of N training views) on the grid's device.
            image_size: (H, W) of the training images.
            near_plane: a centre must lie at view depth > near_plane.
        Returns:
            the number of cells marked unseen.
        """
        if torch.device(cameras.device) != self.density.device:
            raise ValueError(
                f"cameras are on {cameras.device} but the occupancy grid is on "
                f"{self.density.device}"
            )
        h, w = (int(v) for v in torch.as_tensor(image_size).reshape(-1)[:2])
        n_cams = cameras.R.shape[0]
        w2v = cameras.get_world_to_view_transform()
        seen = torch.zeros(self.n_cells, dtype=torch.bool, device=self.density.device)
        all_idx = torch.arange(self.n_cells, device=self.density.device)
        for s in range(0, self.n_cells, chunk):
            pts = self.cell_points(all_idx[s : s + chunk], jitter=False).to(cameras.R.dtype)
            pts_b = pts[None].expand(n_cams, -1, -1)
            depth = w2v.transform_points(pts_b)[..., 2]
            xy = cameras.transform_points_screen(pts_b, image_size=((h, w),))[..., :2]
            vis = (depth > near_plane) & (xy[..., 0] >= 0) & (xy[..., 0] < w)
            vis &= (xy[..., 1] >= 0) & (xy[..., 1] < h) & torch.isfinite(xy).all(-1)
            seen[s : s + chunk] = vis.any(0)
        flat = self.density.view(-1)
        flat[~seen] = -1.0
        self.bitfield.copy_(ops.packbits((self.occupied().reshape(-1) & seen).float(), 0.5))
        return int((~seen).sum())

    def extra_repr(self) -> str:
        return (
            f"aabb={self.aabb.tolist()}, resolution={self.resolution}, cascades={self.cascades}, "
            f"step_size={self.step_size:.5g}"
        )
