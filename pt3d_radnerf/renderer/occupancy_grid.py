"""OccupancyGrid: a multi-cascade binary occupancy grid over an axis-aligned box, and its lifecycle.

The caller owns the grid (nerfacc's ``OccGridEstimator`` pattern): it builds it from a box, a
resolution and a step, passes it to :class:`OccupancyGridRaysampler` (``occupancy_grid=``), and
drives its updates, either by calling :meth:`OccupancyGrid.update` once per training step or by
giving the raysampler an ``update_fn`` (then the raysampler updates it on every training call).
Every option is a constructor argument, readable as a read-only property afterwards.

Values (buffer ``sigma``) are densities sigma (1 / length, as RAD-NeRF's ``density_grid``); a
cell is occupied when its value exceeds ``min(mean of the seen cells, threshold)``, also in sigma
units (RAD-NeRF's ``density_thresh``). The march only reads the packed bitfield. Special values:
NaN = never evaluated yet (occupied, so a fresh grid samples everywhere), -1 = seen by no
training camera (never updated, never occupied; :meth:`mark_unseen`).

Layout: ``pt3d_radnerf.ops.grid_layout`` (shared with ``ops.occupancy_march``).
"""

import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from .. import ops
from ..ops import grid_layout
from ..ops.composite import DENSITY_MODES


class OccupancyGrid(nn.Module):
    """Binary occupancy of ``cascades`` nested grids of ``resolution^3`` cells.

    Args:
        aabb: base box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` (non-cubic allowed).
        resolution: cells per axis per cascade, a power of two (default 128).
        cascades: number of nested grids, each doubling the extent (default 1).
        step_size: the metric marching step (default ``sqrt(3) * longest side / resolution``);
            the raysampler's default ``dt_min``, and the step that converts a ``density_mode=
            "alpha"`` density function's per-step opacity to sigma.
        update_every: :meth:`update` does work only when ``step % update_every == 0``.
        warmup_steps: before this step updates sweep all cells (every cell, or with
            ``cells_per_update`` the next ``cells_per_update`` of a fixed scattered order);
            afterwards half of the evaluated cells are uniform random, half occupied ones.
        decay: ``sigma = max(sigma * decay, new)`` on evaluated cells.
        threshold: sigma above which a cell may be occupied: occupied where
            ``sigma > min(mean sigma, threshold)``. Default ``0.01 / step_size`` (one step
            there absorbs ~1%, instant-ngp's and nerfacc's default); RAD-NeRF uses 10.
        dilation: 6-neighbour dilation iterations applied to the bitfield after each update.
        cells_per_update: the most cells one update evaluates (bounds its cost). None:
            instant-ngp's policy, every cell during warm-up and ``res^3 / 4`` random plus up to
            ``res^3 / 4`` occupied cells per cascade afterwards.

    Buffers (saved in ``state_dict``, moved by ``.to()``): ``aabb`` (6,), ``sigma``
    (cascades, res^3) float32 in morton order, ``bitfield`` (cascades * res^3 / 8,) uint8.
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
        threshold: Optional[float] = None,
        dilation: int = 0,
        cells_per_update: Optional[int] = None,
    ) -> None:
        super().__init__()
        if resolution < 2 or resolution > 1024 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two in [2, 1024], got {resolution}")
        if not 1 <= cascades <= 16:
            raise ValueError(f"cascades must be in [1, 16], got {cascades}")
        box = ops.as_aabb(aabb, torch.zeros(0))
        if box.shape != (6,) or not bool(torch.isfinite(box).all()):
            raise ValueError(f"aabb must be 6 finite numbers (xmin, ymin, zmin, xmax, ymax, zmax), "
                             f"got {box.tolist()}")
        if bool((box[3:] <= box[:3]).any()):
            raise ValueError(f"aabb needs min < max on every axis, got {box.tolist()}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if threshold is not None and not threshold >= 0:
            raise ValueError(f"threshold must be >= 0 (sigma units), got {threshold}")
        if cells_per_update is not None and cells_per_update < 1:
            raise ValueError(f"cells_per_update must be >= 1 or None, got {cells_per_update}")
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0, got {dilation}")
        extent = float((box[3:] - box[:3]).max())
        self._resolution, self._cascades = int(resolution), int(cascades)
        self._step_size = float(step_size) if step_size else math.sqrt(3) * extent / resolution
        self._update_every, self._warmup_steps = int(update_every), int(warmup_steps)
        self._decay, self._dilation = float(decay), int(dilation)
        self._threshold = 0.01 / self._step_size if threshold is None else float(threshold)
        self._cells_per_update = None if cells_per_update is None else int(cells_per_update)
        n = self._cascades * self._resolution**3
        self._box = tuple(box.tolist())
        self.register_buffer("aabb", box)
        self.register_buffer("sigma", torch.full((self._cascades, self._resolution**3), float("nan")))
        self.register_buffer("bitfield", torch.full((n // 8,), 255, dtype=torch.uint8))
        # Incremental re-thresholding (update()): the sum and count of the seen cells (sigma >= 0)
        # and the threshold the bitfield was packed with, valid while both buffers are at the
        # recorded versions (any other write, a load_state_dict or .to() triggers a full refresh).
        self._seen_sum, self._seen_count, self._packed_at = 0.0, 0, float("nan")
        self._synced_versions = None

    # ---- configuration (read-only: build a new grid to change it) -------------------------------
    resolution = property(lambda self: self._resolution, doc="Cells per axis per cascade.")
    cascades = property(lambda self: self._cascades, doc="Number of nested grids.")
    step_size = property(lambda self: self._step_size, doc="Metric marching step.")
    update_every = property(lambda self: self._update_every, doc="Update interval in steps.")
    warmup_steps = property(lambda self: self._warmup_steps, doc="Steps of full sweeps.")
    decay = property(lambda self: self._decay, doc="Per-update decay of evaluated cells.")
    threshold = property(lambda self: self._threshold, doc="Occupancy threshold (sigma).")
    dilation = property(lambda self: self._dilation, doc="Bitfield dilation iterations.")
    cells_per_update = property(lambda self: self._cells_per_update, doc="Update budget.")
    box = property(lambda self: self._box, doc="The base box as 6 host floats (what the march reads: "
                   "no device copy per call, unlike the ``aabb`` buffer).")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The box is configuration (host copy above): refuse a state made for another box.
        saved = state_dict.get(prefix + "aabb")
        if saved is not None and tuple(saved.reshape(-1).tolist()) != self._box:
            raise ValueError(f"occupancy grid state was saved for aabb {saved.reshape(-1).tolist()}, "
                             f"this grid has {list(self._box)}: build the grid with the same aabb")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- queries ----------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return self._cascades * self._resolution**3

    @property
    def occupancy_fraction(self) -> float:
        """Fraction of occupied cells over all cascades."""
        return float(grid_layout.unpack_bits(self.bitfield).float().mean())

    def occupied(self) -> torch.Tensor:
        """(cascades, res^3) bool occupancy, morton order."""
        return grid_layout.unpack_bits(self.bitfield).view(self._cascades, -1)

    def set_occupancy(self, occupied: torch.Tensor) -> None:
        """Overwrites the bitfield from (cascades, res^3) bool in morton order (tests, tools)."""
        occupied = occupied.reshape(self._cascades, -1).to(self.bitfield.device)
        self.bitfield.copy_(ops.packbits(occupied.float(), 0.5))

    def cell_points(self, indices: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        """(M, 3) world points in flat cells ``indices`` (M,): uniform inside, or centres."""
        offsets = (torch.rand(indices.shape[0], 3, device=indices.device) if jitter
                   else torch.full((indices.shape[0], 3), 0.5, device=indices.device))
        return grid_layout.cell_points(indices, self.aabb, self._cascades, self._resolution, offsets)

    def is_occupied(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the finest cascade cell containing each (N, 3) point is occupied
        (False outside the outermost cascade)."""
        idx, inside = grid_layout.point_cells(points, self.aabb, self._cascades, self._resolution)
        return grid_layout.read_bits(self.bitfield, idx) & inside

    # ---- updates ----------------------------------------------------------------------------
    def _cells_to_update(self, step: int) -> torch.Tensor:
        n, n3, dev = self.n_cells, self._resolution**3, self.sigma.device
        budget = self._cells_per_update
        if step < self._warmup_steps:
            if budget is None or budget >= n:
                return torch.arange(n, device=dev)
            # Sweep in a fixed scattered order: k -> k * p mod n is a bijection for a prime p
            # coprime to n = cascades * 2^(3 log2 res) (p > 16 > cascades; k * p < 2^63 for any
            # grid), so every cell is evaluated once per n / budget updates.
            start = (step // self._update_every) * budget
            k = (start + torch.arange(budget, device=dev, dtype=torch.int64)) % n
            return (k * 1_000_003) % n
        if budget is not None:
            # Half occupied cells (uniform, with replacement), half uniform random cells.
            picked_occ = self._sample_occupied(budget // 2)
            return torch.cat([torch.randint(0, n, (budget - picked_occ.shape[0],), device=dev), picked_occ])
        occupied = self.occupied().reshape(-1).nonzero()[:, 0]
        picked = []  # instant-ngp: per cascade, 1/4 random + up to 1/4 occupied
        for c in range(self._cascades):
            occ = occupied[(occupied >= c * n3) & (occupied < (c + 1) * n3)]
            if occ.numel() > n3 // 4:
                occ = occ[torch.randint(0, occ.numel(), (n3 // 4,), device=dev)]
            picked += [torch.randint(0, n3, (n3 // 4,), device=dev) + c * n3, occ]
        return torch.cat(picked)

    def _sample_occupied(self, count: int) -> torch.Tensor:
        """(min(count, occupied),) flat indices of occupied cells drawn uniformly with replacement:
        draw ranks r and take the r-th occupied cell in ascending order, found from the bitfield
        bytes (per-byte popcounts, no unpacking of all cells)."""
        bytes_nz = (self.bitfield != 0).nonzero()[:, 0]
        values = self.bitfield[bytes_nz].long()
        popcount, nth_bit = _bit_tables(self.bitfield.device)
        per_byte = popcount[values]
        ends = per_byte.cumsum(0)  # occupied cells up to and including each nonzero byte
        total = int(ends[-1]) if ends.numel() else 0
        ranks = torch.randint(0, max(total, 1), (min(count, total),), device=self.bitfield.device)
        which = torch.searchsorted(ends, ranks, right=True)  # the byte holding the rank-th cell
        within = ranks - (ends[which] - per_byte[which])  # its rank among the byte's set bits
        return bytes_nz[which] * 8 + nth_bit[values[which], within]

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        step: int,
        *,
        density_mode: str = "sigma",
        chunk: int = 1 << 16,
    ) -> bool:
        """instant-ngp / nerfacc update policy; returns True when the grid changed.

        Args:
            density_fn: maps (N, 3) world points to (N,) (or (N, 1)) densities, e.g.
                ``field.density`` or ``lambda x: field.density(x, audio=...)``.
            step: the training step; work happens only when ``step % update_every == 0``
                (see the class doc for which cells are evaluated).
            density_mode: "sigma" (default): ``density_fn`` returns sigma >= 0 (1 / length);
                "alpha": it returns one step's opacity in [0, 1] (a PyTorch3D-tutorial-style
                field), converted with the grid's step: ``sigma = -log(1 - alpha) / step_size``.
            chunk: points per ``density_fn`` call.

        The bitfield is re-thresholded incrementally: while ``min(mean, threshold)`` stays the
        same only the bytes of the evaluated cells are repacked (the same bits as
        :meth:`refresh_bitfield`), so the per-update cost beyond ``density_fn`` is small.
        """
        if density_mode not in DENSITY_MODES:
            raise ValueError(f"density_mode must be 'sigma' or 'alpha', got {density_mode!r}")
        if not callable(density_fn):
            raise TypeError(f"density_fn must be callable (points (N, 3) -> (N,)), got {type(density_fn).__name__}")
        if step % self._update_every != 0:
            return False
        indices = self._cells_to_update(step)
        values = torch.empty(indices.shape[0], device=self.sigma.device)
        for s in range(0, indices.shape[0], chunk):
            pts = self.cell_points(indices[s : s + chunk])
            values[s : s + chunk] = self._as_sigma(_call_density(density_fn, pts), pts.shape[0], density_mode)
        synced = self._synced_versions is not None and self._synced_versions == self._versions()
        cells = torch.unique(indices)  # sorted, for the running sums and the touched bytes
        flat = self.sigma.view(-1)
        before = flat[cells]
        # Decay-max on the gathered cells only (not a copy of the whole grid); a first evaluation
        # is max(0, new), unseen -1 stays.
        old = torch.nan_to_num(flat[indices], nan=0.0)
        slots = torch.arange(indices.shape[0], device=indices.device)
        new = ops.decayed_max_update(old, slots, values, self._decay)
        # Cells drawn twice keep the max of their evaluations: a scatter-max is order-independent,
        # where an indexed write would race between threads over which copy lands last.
        flat.scatter_reduce_(0, indices, new, reduce="amax", include_self=False)
        if not synced or self._dilation > 0:
            self.refresh_bitfield()
            return True
        after = flat[cells]
        self._seen_sum += float(_seen_sum(after) - _seen_sum(before))
        self._seen_count += int((after >= 0).sum()) - int((before >= 0).sum())
        thre = self._current_threshold()
        if thre != self._packed_at:
            self._pack(thre)
        else:  # same threshold: only the bytes of the updated cells can change
            touched = torch.unique_consecutive(cells >> 3)
            values8 = torch.nan_to_num(self.sigma.view(-1, 8)[touched], nan=float("inf"))
            self.bitfield[touched] = ops.packbits(values8, thre)
            self._synced_versions = self._versions()
        return True

    def _as_sigma(self, out: torch.Tensor, n: int, density_mode: str) -> torch.Tensor:
        """Checks a density_fn output for ``n`` points and returns (n,) float32 sigma."""
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"density_fn must return a tensor, got {type(out).__name__}")
        if out.shape not in ((n,), (n, 1)):
            raise ValueError(
                f"density_fn must return ({n},) or ({n}, 1) {density_mode} values for {n} points, "
                f"got shape {tuple(out.shape)}"
            )
        out = out.reshape(-1).float()
        if n == 0:
            return out
        lo, hi = (float(v) for v in torch.aminmax(out))
        if math.isnan(lo) or math.isnan(hi) or bool(torch.isnan(out).any()):
            raise ValueError(f"density_fn returned NaN {density_mode} values")
        if lo < 0:
            raise ValueError(f"density_fn returned negative {density_mode} values (min {lo:.4g}); "
                             f"{density_mode} must be >= 0")
        if density_mode == "sigma":
            return out
        if hi > 1:
            raise ValueError(f"density_mode='alpha' needs values in [0, 1], got max {hi:.4g} "
                             f"(a density sigma? use density_mode='sigma')")
        return -torch.log1p(-out.clamp(max=1.0 - 1e-7)) / self._step_size

    @torch.no_grad()
    def refresh_bitfield(self) -> None:
        """Re-thresholds all of ``sigma`` at ``min(mean of the seen cells, threshold)`` (+ optional
        dilation). :meth:`update` does the same incrementally (the same bits)."""
        seen = self.sigma >= 0  # NaN (never evaluated) and -1 (unseen) are not in the mean
        self._seen_sum, self._seen_count = float(_seen_sum(self.sigma)), int(seen.sum())
        self._pack(self._current_threshold())

    def _current_threshold(self) -> float:
        """``min(mean of the seen cells, threshold)``; ``threshold`` when no cell is seen (>= 0,
        so unseen cells at -1 stay empty)."""
        if self._seen_count == 0:
            return self._threshold
        return min(self._seen_sum / self._seen_count, self._threshold)

    def _pack(self, thre: float) -> None:
        values = torch.nan_to_num(self.sigma, nan=float("inf"))  # never evaluated: occupied
        if self._dilation > 0:
            bits = ops.dilate_occupancy(values > thre, self._resolution, self._dilation) & (values >= 0)
            self.bitfield.copy_(ops.packbits(bits.float(), 0.5))
        else:
            self.bitfield.copy_(ops.packbits(values, thre))
        self._packed_at = thre
        self._synced_versions = self._versions()

    def _versions(self):
        """The in-place write counters of ``sigma`` and ``bitfield`` (None for inference-mode
        tensors, which keep none: every update then re-thresholds in full)."""
        try:
            return self.sigma._version, self.bitfield._version
        except RuntimeError:
            return None

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
        if torch.device(cameras.device) != self.sigma.device:
            raise ValueError(
                f"cameras are on {cameras.device} but the occupancy grid is on {self.sigma.device}"
            )
        h, w = (int(v) for v in torch.as_tensor(image_size).reshape(-1)[:2])
        n_cams = cameras.R.shape[0]
        w2v = cameras.get_world_to_view_transform()
        seen = torch.zeros(self.n_cells, dtype=torch.bool, device=self.sigma.device)
        all_idx = torch.arange(self.n_cells, device=self.sigma.device)
        for s in range(0, self.n_cells, chunk):
            pts = self.cell_points(all_idx[s : s + chunk], jitter=False).to(cameras.R.dtype)
            pts_b = pts[None].expand(n_cams, -1, -1)
            depth = w2v.transform_points(pts_b)[..., 2]
            xy = cameras.transform_points_screen(pts_b, image_size=((h, w),))[..., :2]
            vis = (depth > near_plane) & (xy[..., 0] >= 0) & (xy[..., 0] < w)
            vis &= (xy[..., 1] >= 0) & (xy[..., 1] < h) & torch.isfinite(xy).all(-1)
            seen[s : s + chunk] = vis.any(0)
        self.sigma.view(-1)[~seen] = -1.0
        self.bitfield.copy_(ops.packbits((self.occupied().reshape(-1) & seen).float(), 0.5))
        return int((~seen).sum())

    def extra_repr(self) -> str:
        return (
            f"aabb={self.aabb.tolist()}, resolution={self._resolution}, cascades={self._cascades}, "
            f"step_size={self._step_size:.5g}, threshold={self._threshold:.5g}, "
            f"update_every={self._update_every}, warmup_steps={self._warmup_steps}, "
            f"decay={self._decay}, dilation={self._dilation}, cells_per_update={self._cells_per_update}"
        )


def _seen_sum(values: torch.Tensor) -> torch.Tensor:
    """float64 sum of the seen values (>= 0) of a float tensor (NaN and -1 left out)."""
    return torch.where(values >= 0, values, torch.zeros_like(values)).sum(dtype=torch.float64)


_BIT_TABLES = {}


def _bit_tables(device: torch.device):
    """(256,) popcount and (256, 8) position of the k-th set bit of every byte value (int64)."""
    if device not in _BIT_TABLES:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1  # (256, 8)
        # The k-th set bit: stable sort puts set bits first, in ascending position.
        nth = torch.argsort(-bits, dim=1, stable=True)
        _BIT_TABLES[device] = (bits.sum(1).to(device), nth.to(device))
    return _BIT_TABLES[device]


def _call_density(density_fn, points: torch.Tensor) -> torch.Tensor:
    try:
        return density_fn(points)
    except AttributeError as err:
        # The usual mistake: passing the field (whose forward takes a ray bundle) for field.density.
        raise TypeError(
            f"density_fn must map points (N, 3) to densities (N,); calling it on points failed "
            f"with AttributeError: {err}. Pass e.g. `field.density` or a lambda, not the field."
        ) from err
