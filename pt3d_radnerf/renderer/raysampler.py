"""OccupancyGridRaysampler: PyTorch3D rays, clipped to an occupancy grid, sampled in occupied space.

A drop-in for ``MultinomialRaysampler`` / ``NDCMultinomialRaysampler`` / ``MonteCarloRaysampler``
inside ``ImplicitRenderer``: it takes their keyword arguments with the same meaning and builds the
very same rays (``cameras.unproject_points(..., from_ndc=True)`` at depths 1 and 2).

Which pixels (highest priority first): a boolean ``mask`` (B, H, W) -> (B, n, 1, 2) rays;
``patch_size`` P -> one random P x P patch per image, (B, P, P, 2); ``n_rays_per_image`` with an
image grid -> random pixels (B, n, 1, 2); ``n_rays_per_image`` without image size -> real-valued
xys uniform in [min_x, max_x] x [min_y, max_y], (B, n, 2) (MonteCarlo); otherwise the full grid
(B, H, W, 2). The grid is PyTorch3D's NDC grid unless min_x/max_x/min_y/max_y are given.

Outputs:
  * ``mode="packed"`` (default): :class:`PackedRayBundle`, a variable number of samples per ray
    stepped by ``dt = clamp(t * dt_gamma, dt_min, dt_max)`` (metric) in occupied cells only;
  * ``mode="dense"``: PyTorch3D ``RayBundle`` with ``n_pts_per_ray`` lengths per ray spread
    uniformly over the occupied part of ``[min_depth, max_depth]`` (inverse CDF of occupied
    length, occupancy resolved in steps of 1/4 of the finest cell). A ray whose whole range is occupied gets exactly ``linspace(min_depth, max_depth)``;
    a ray with no occupied space gets it too (stock behaviour; the field says empty there).
"""

from dataclasses import replace
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from pytorch3d.renderer.implicit.utils import RayBundle
from torch import nn

from .. import ops
from .occupancy_grid import OccupancyGrid
from .ray_bundle import PackedRayBundle, pack_info


def _ndc_range(image_width: int, image_height: int):
    """NDCMultinomialRaysampler's pixel-centre bounds (min_x, max_x, min_y, max_y)."""
    if image_width >= image_height:
        range_x, range_y = image_width / image_height, 1.0
    else:
        range_x, range_y = 1.0, image_height / image_width
    hx, hy = range_x / image_width, range_y / image_height
    return range_x - hx, -range_x + hx, range_y - hy, -range_y + hy


def ndc_grid_pixels(xys: torch.Tensor, image_width: int, image_height: int):
    """Inverse of the NDC pixel grid: (row, col) int64 indices (...,) of grid ``xys`` (..., 2).

    The grid is PyTorch3D's (``NDCMultinomialRaysampler``'s and ours): column 0 has the largest
    x (+X points left), row 0 the largest y (+Y up). Used to fetch the ground-truth pixels of a
    random-pixel ray batch.
    """
    min_x, max_x, min_y, max_y = _ndc_range(image_width, image_height)
    col = (xys[..., 0] - min_x) / (max_x - min_x) * (image_width - 1)
    row = (xys[..., 1] - min_y) / (max_y - min_y) * (image_height - 1)
    col = col.round().long().clamp(0, image_width - 1)
    row = row.round().long().clamp(0, image_height - 1)
    return row, col


def rays_from_xys(cameras, xys: torch.Tensor, unit_directions: bool = False):
    """PyTorch3D's rays for NDC ``xys`` (B, ..., 2): origins, directions (B, ..., 3).

    Points at depths 1 and 2 are unprojected; direction = p2 - p1, origin = p1 - direction
    (exactly as ``pytorch3d.renderer.implicit.raysampling``); differentiable w.r.t. cameras.
    """
    b, spatial = xys.shape[0], xys.shape[1:-1]
    n = spatial.numel()
    xy = xys.reshape(b, 1, n, 2).expand(b, 2, n, 2).reshape(b, 2 * n, 2)
    depth = torch.cat([xys.new_ones(b, n, 1), 2.0 * xys.new_ones(b, n, 1)], dim=1)
    # For NDC cameras PyTorch3D's from_ndc=True composes with a float32 identity, which is exact
    # but breaks float64 cameras: skip that no-op there (same numbers, float64 gradcheck works).
    world = cameras.unproject_points(torch.cat([xy, depth], -1), from_ndc=not cameras.in_ndc())
    directions = world[:, n:] - world[:, :n]
    origins = world[:, :n] - directions
    if unit_directions:
        directions = F.normalize(directions, dim=-1)
    return origins.reshape(b, *spatial, 3), directions.reshape(b, *spatial, 3)


class OccupancyGridRaysampler(nn.Module):
    """Rays from PyTorch3D cameras, sampled only where an :class:`OccupancyGrid` is occupied.

    PyTorch3D arguments (same meaning as in its raysamplers): ``image_width``, ``image_height``,
    ``n_rays_per_image``, ``n_pts_per_ray`` (dense mode), ``min_depth``, ``max_depth`` (in
    ``lengths`` units), ``min_x``/``max_x``/``min_y``/``max_y``, ``unit_directions``,
    ``stratified_sampling`` (packed: random first-step offset per ray; dense: jitter within strata).

    Own arguments:
        occupancy_grid: the grid; if None, ``volumetric_function.occupancy_grid`` at call time.
        mode: "packed" (PackedRayBundle) or "dense" (RayBundle).
        patch_size: sample one random square patch of this size per image.
        dt_min, dt_max, dt_gamma: metric step rule (defaults: the grid's ``step_size``, the
            coarsest cascade's step, 0 = fixed step). RAD-NeRF: ``dt_gamma=0``.
        max_samples_per_ray: cap of occupied samples per ray (packed mode; None: no cap).
        alpha_thre, early_stop_eps: sigma-pruned sampling (packed mode, for inference): with
            either > 0, ``volumetric_function.density(points, **kwargs)`` is evaluated without
            grad and samples with alpha < alpha_thre or transmittance < early_stop_eps are dropped.

    Every constructor option except the grid, mode and image grid can be overridden per call.
    """

    def __init__(
        self,
        *,
        image_width: Optional[int] = None,
        image_height: Optional[int] = None,
        n_rays_per_image: Optional[int] = None,
        n_pts_per_ray: int = 64,
        min_depth: float = 0.0,
        max_depth: float = float("inf"),
        min_x: Optional[float] = None,
        max_x: Optional[float] = None,
        min_y: Optional[float] = None,
        max_y: Optional[float] = None,
        unit_directions: bool = False,
        stratified_sampling: bool = False,
        occupancy_grid: Optional[OccupancyGrid] = None,
        mode: str = "packed",
        patch_size: Optional[int] = None,
        dt_min: Optional[float] = None,
        dt_max: Optional[float] = None,
        dt_gamma: float = 0.0,
        max_samples_per_ray: Optional[int] = None,
        alpha_thre: float = 0.0,
        early_stop_eps: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ("packed", "dense"):
            raise ValueError(f"mode must be 'packed' or 'dense', got {mode!r}")
        if (image_width is None) != (image_height is None):
            raise ValueError("image_width and image_height must be given together")
        bounds = (min_x, max_x, min_y, max_y)
        if any(v is None for v in bounds) and not all(v is None for v in bounds):
            raise ValueError("min_x, max_x, min_y and max_y must be given together")
        if image_width is None and (bounds[0] is None or n_rays_per_image is None):
            raise ValueError(
                "give image_width/image_height (image grid), or min_x/max_x/min_y/max_y with "
                "n_rays_per_image (Monte Carlo xys)"
            )
        self.image_width, self.image_height = image_width, image_height
        if image_width is not None and bounds[0] is None:
            bounds = _ndc_range(image_width, image_height)
        self.min_x, self.max_x, self.min_y, self.max_y = bounds
        self.occupancy_grid = occupancy_grid
        self.mode = mode
        self.unit_directions = unit_directions
        self._defaults = dict(
            n_rays_per_image=n_rays_per_image,
            n_pts_per_ray=n_pts_per_ray,
            min_depth=min_depth,
            max_depth=max_depth,
            stratified_sampling=stratified_sampling,
            patch_size=patch_size,
            dt_min=dt_min,
            dt_max=dt_max,
            dt_gamma=dt_gamma,
            max_samples_per_ray=max_samples_per_ray,
            alpha_thre=alpha_thre,
            early_stop_eps=early_stop_eps,
        )
        if image_width is not None:
            # PyTorch3D builds the grid in float32 whatever the cameras' dtype; so do we.
            y, x = torch.meshgrid(
                torch.linspace(self.min_y, self.max_y, image_height, dtype=torch.float32),
                torch.linspace(self.min_x, self.max_x, image_width, dtype=torch.float32),
                indexing="ij",
            )
            self.register_buffer("_xy_grid", torch.stack([x, y], -1), persistent=False)
        else:
            self._xy_grid = None

    # ---- pixels -------------------------------------------------------------------------------
    def _xys(self, batch: int, device, mask, n_rays, patch_size) -> torch.Tensor:
        grid = None if self._xy_grid is None else self._xy_grid.to(device)
        if mask is not None:
            if grid is None:
                raise ValueError("mask needs an image grid (image_width/image_height)")
            if mask.shape != (batch, *grid.shape[:2]):
                raise ValueError(
                    f"mask must have shape (batch, image_height, image_width) = "
                    f"{(batch, *grid.shape[:2])}, got {tuple(mask.shape)}"
                )
            weights = mask.reshape(batch, -1).to(device=device, dtype=torch.float32)
            counts = (weights > 0).sum(-1)
            if n_rays is None:
                n_rays = int(counts.min()) if batch > 0 else 0
            elif n_rays > 0 and bool((counts == 0).any()):
                raise ValueError("mask selects no pixel in some image but n_rays_per_image > 0")
            if n_rays == 0:
                return grid.new_zeros(batch, 0, 1, 2)
            replace = bool((counts < n_rays).any())
            idx = torch.multinomial(weights, n_rays, replacement=replace)
            return grid.reshape(-1, 2)[idx][:, :, None]
        if patch_size is not None:
            if grid is None:
                raise ValueError("patch_size needs an image grid (image_width/image_height)")
            h, w = grid.shape[:2]
            if not 0 < patch_size <= min(h, w):
                raise ValueError(f"patch_size must be in [1, {min(h, w)}], got {patch_size}")
            y0 = torch.randint(0, h - patch_size + 1, (batch,)).tolist()
            x0 = torch.randint(0, w - patch_size + 1, (batch,)).tolist()
            return torch.stack(
                [grid[a : a + patch_size, b : b + patch_size] for a, b in zip(y0, x0)]
            )
        if n_rays is not None:
            if grid is not None:
                flat = grid.reshape(-1, 2)
                idx = torch.multinomial(flat.new_ones(batch, flat.shape[0]), n_rays)
                return flat[idx][:, :, None]
            # Same draws as MonteCarloRaysampler (x then y), so seeded runs give the same xys.
            return torch.cat(
                [
                    torch.rand(batch, n_rays, 1, device=device) * (hi - lo) + lo
                    for lo, hi in ((self.min_x, self.max_x), (self.min_y, self.max_y))
                ],
                dim=2,
            )
        return grid.expand(batch, -1, -1, -1)

    # ---- main ---------------------------------------------------------------------------------
    def forward(
        self,
        cameras,
        *,
        volumetric_function=None,
        mask: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Union[PackedRayBundle, RayBundle]:
        """Rays of ``cameras`` (batch B) and their samples in occupied space.

        Per-call overrides (keyword): n_rays_per_image, n_pts_per_ray, min_depth, max_depth,
        stratified_sampling, patch_size, dt_min, dt_max, dt_gamma, max_samples_per_ray,
        alpha_thre, early_stop_eps. Other kwargs go to ``volumetric_function.density``.
        """
        rays, grid, march, opt = self._setup(cameras, volumetric_function, mask, kwargs)
        o = rays.origins.reshape(-1, 3)
        d = rays.directions.reshape(-1, 3)
        if self.mode == "dense":
            lengths = self._dense_lengths(o, d, grid, march, opt)
            shape = rays.origins.shape[:-1]
            return RayBundle(rays.origins, rays.directions, lengths.reshape(*shape, -1), rays.xys)

        jitter = torch.rand_like(o[:, 0]) if opt["stratified_sampling"] else None
        ray_idx, t0, t1, info = ops.occupancy_march(o, d, grid.aabb, grid.bitfield, jitter=jitter, **march)
        if opt["alpha_thre"] > 0 or opt["early_stop_eps"] > 0:
            ray_idx, t0, t1, info = self._prune(
                volumetric_function, o, d, ray_idx, t0, t1, info, opt, kwargs
            )
        return replace(rays, ray_indices=ray_idx, t_starts=t0, t_ends=t1, packed_info=info)

    def rays(
        self, cameras, *, volumetric_function=None, mask: Optional[torch.Tensor] = None, **kwargs
    ) -> Tuple[PackedRayBundle, OccupancyGrid, Dict[str, float]]:
        """What :meth:`forward` would march, without marching (for render loops that march
        incrementally, e.g. :func:`pt3d_radnerf.renderer.render_compacted`).

        Returns:
            rays: a :class:`PackedRayBundle` with forward's origins, directions, xys and
                camera_ids and no samples;
            grid: the occupancy grid;
            march: keyword arguments of :func:`pt3d_radnerf.ops.occupancy_march` (cascades,
                resolution, t_min, t_max, dt_min, dt_max, dt_gamma, max_samples), per-call
                overrides applied.
        """
        rays, grid, march, _ = self._setup(cameras, volumetric_function, mask, kwargs)
        return rays, grid, march

    def _setup(self, cameras, volumetric_function, mask, kwargs):
        """Resolves per-call options (popped from ``kwargs``), the grid, the rays (as a sample-less
        PackedRayBundle) and the march arguments."""
        opt = {}
        for key, default in self._defaults.items():
            value = kwargs.pop(key, None)
            opt[key] = default if value is None else value
        grid = self.occupancy_grid
        if grid is None:
            grid = getattr(volumetric_function, "occupancy_grid", None)
        if not isinstance(grid, OccupancyGrid):
            raise ValueError(
                "no occupancy grid: pass occupancy_grid= to OccupancyGridRaysampler or give the "
                "volumetric_function an `occupancy_grid` attribute"
            )
        device = grid.bitfield.device
        if torch.device(cameras.device) != device:
            raise ValueError(f"cameras are on {cameras.device} but the occupancy grid is on {device}")
        if opt["min_depth"] < 0 or not opt["max_depth"] > opt["min_depth"]:
            raise ValueError(
                f"need 0 <= min_depth < max_depth, got {opt['min_depth']} and {opt['max_depth']}"
            )
        batch = cameras.R.shape[0]
        xys = self._xys(batch, device, mask, opt["n_rays_per_image"], opt["patch_size"])
        origins, directions = rays_from_xys(cameras, xys.to(cameras.R.dtype), self.unit_directions)
        if not (bool(torch.isfinite(origins).all()) and bool(torch.isfinite(directions).all())):
            raise ValueError("cameras produce non-finite ray origins or directions (NaN/inf in R, T?)")
        cam = torch.arange(batch, device=device).reshape(batch, *([1] * (origins.dim() - 2)))
        no_samples = torch.zeros(0, dtype=torch.long, device=device)
        rays = PackedRayBundle(
            origins=origins,
            directions=directions,
            xys=xys.to(origins.dtype),
            ray_indices=no_samples,
            t_starts=origins.new_zeros(0),
            t_ends=origins.new_zeros(0),
            packed_info=pack_info(no_samples, origins.numel() // 3),
            camera_ids=cam.expand(origins.shape[:-1]),
        )

        extent = float((grid.aabb[3:] - grid.aabb[:3]).max())
        dt_min = opt["dt_min"] or grid.step_size
        dt_max = opt["dt_max"]
        if dt_max is None:
            dt_max = dt_min if opt["dt_gamma"] == 0 else max(
                dt_min, 3**0.5 * extent * 2 ** (grid.cascades - 1) / grid.resolution
            )
        march = dict(
            cascades=grid.cascades,
            resolution=grid.resolution,
            t_min=opt["min_depth"],
            t_max=opt["max_depth"],
            dt_min=dt_min,
            dt_max=dt_max,
            dt_gamma=opt["dt_gamma"],
            max_samples=opt["max_samples_per_ray"],
        )
        return rays, grid, march, opt

    @torch.no_grad()
    def _dense_lengths(self, o, d, grid, march, opt) -> torch.Tensor:
        """(R, P) lengths: inverse CDF of occupied length over [min_depth, max_depth]."""
        lo, hi, p = float(opt["min_depth"]), float(opt["max_depth"]), int(opt["n_pts_per_ray"])
        if hi == float("inf"):
            raise ValueError("dense mode needs a finite max_depth")
        n = o.shape[0]
        t_lin = torch.linspace(lo, hi, p, dtype=o.dtype, device=o.device).expand(n, p)
        if opt["stratified_sampling"] and p > 1:
            mids = 0.5 * (t_lin[:, 1:] + t_lin[:, :-1])
            upper = torch.cat([mids, t_lin[:, -1:]], -1)
            lower = torch.cat([t_lin[:, :1], mids], -1)
            t_lin = lower + (upper - lower) * torch.rand_like(lower)
        if n == 0 or p == 0:
            return t_lin
        # Occupancy resolved at a quarter of the finest cell: points leave occupied cells by at
        # most 1/8 cell (a step is kept when its midpoint's cell is occupied).
        fine = float((grid.aabb[3:] - grid.aabb[:3]).min()) / grid.resolution / 4
        march = dict(march, dt_min=fine, dt_max=fine, dt_gamma=0.0, max_samples=None)
        ray_idx, t0, t1, info = ops.occupancy_march(o, d, grid.aabb, grid.bitfield, **march)
        seg = (t1 - t0).double()
        occ_len = torch.zeros(n, dtype=torch.float64, device=o.device).index_add_(0, ray_idx, seg)
        if seg.numel() == 0:
            return t_lin
        cum = torch.cumsum(seg, 0)  # inclusive, global
        cum_excl = cum - seg
        start, count = info[:, 0], info[:, 1]
        base = cum_excl[start.clamp(max=seg.numel() - 1)]
        q = ((t_lin.double() - lo) / (hi - lo)).clamp(0, 1)
        target = base[:, None] + q * occ_len[:, None]
        k = torch.searchsorted(cum, target.reshape(-1), right=True).reshape(n, p)
        k = torch.minimum(torch.maximum(k, start[:, None]), (start + count - 1).clamp(min=0)[:, None])
        k = k.clamp(max=seg.numel() - 1)
        t = t0.double()[k] + (target - cum_excl[k])
        t = torch.minimum(t, t1.double()[k]).to(o.dtype)
        full = (occ_len >= (hi - lo) * (1 - 1e-6)) | (count == 0)
        return torch.where(full[:, None], t_lin, t)

    @torch.no_grad()
    def _prune(self, volumetric_function, o, d, ray_idx, t0, t1, info, opt, kwargs):
        """nerfacc-style sigma pruning: keep alpha >= alpha_thre and transmittance >= eps."""
        density = getattr(volumetric_function, "density", None)
        if density is None:
            raise ValueError("alpha_thre/early_stop_eps need volumetric_function.density(points)")
        if ray_idx.numel() == 0:
            return ray_idx, t0, t1, info
        mids = 0.5 * (t0 + t1)
        pts = o[ray_idx] + mids[:, None] * d[ray_idx]
        sigma = density(pts, **kwargs).reshape(-1).to(t0.dtype)
        tau = sigma * (t1 - t0) * d.norm(dim=-1)[ray_idx]
        alpha = 1 - torch.exp(-tau)
        cum = torch.cumsum(tau.double(), 0)
        start = info[:, 0][ray_idx]
        excl = cum - tau.double()
        trans = torch.exp(-(excl - (cum - tau.double())[start]))  # exclusive per-ray sum
        keep = (alpha >= opt["alpha_thre"]) & (trans >= opt["early_stop_eps"])
        ray_idx, t0, t1 = ray_idx[keep], t0[keep], t1[keep]
        return ray_idx, t0, t1, pack_info(ray_idx, o.shape[0])
