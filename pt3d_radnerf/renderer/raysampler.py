"""OccupancyGridRaysampler: PyTorch3D rays, clipped to an occupancy grid, sampled in occupied space.

A drop-in for ``MultinomialRaysampler`` / ``NDCMultinomialRaysampler`` / ``MonteCarloRaysampler``
inside ``ImplicitRenderer``: it takes their keyword arguments with the same meaning and builds the
very same rays (``cameras.unproject_points(..., from_ndc=True)`` at depths 1 and 2), drawing the
same random numbers in the same order, so a seeded run gives the same pixels.

Which pixels (highest priority first): ``n_rays_total`` -> that many rays from cameras drawn with
replacement, one ``HeterogeneousRayBundle``-style batch (n_rays_total, 1, ...) (PyTorch3D 0.7);
a ``mask`` (B, H, W) -> (B, n, 1, 2) rays; ``patch_size`` P -> one random P x P patch per image,
(B, P, P, 2); ``n_rays_per_image`` with an image grid -> random pixels (B, n, 1, 2);
``n_rays_per_image`` without image size -> real-valued xys uniform in [min_x, max_x] x
[min_y, max_y], (B, n, 2) (MonteCarlo); otherwise the full grid (B, H, W, 2). The grid is
PyTorch3D's NDC grid unless min_x/max_x/min_y/max_y are given.

Outputs (``mode``; the default follows the grid):
  * no ``occupancy_grid`` -> ``mode="dense"`` without a grid: exactly the stock sampler's
    ``RayBundle`` (``HeterogeneousRayBundle`` with ``n_rays_total``), ``n_pts_per_ray`` lengths
    ``linspace(min_depth, max_depth)`` per ray (jittered within strata with stratified_sampling);
  * ``occupancy_grid`` given -> ``mode="packed"``: :class:`PackedRayBundle`, a variable number
    of samples per ray stepped by ``dt = clamp(t * dt_gamma, dt_min, dt_max)`` (metric) in
    occupied cells only;
  * ``mode="dense"`` with a grid: ``RayBundle`` with ``n_pts_per_ray`` lengths per ray spread
    uniformly over the occupied part of ``[min_depth, max_depth]`` (inverse CDF of occupied
    length, occupancy resolved in steps of 1/4 of the finest cell). A ray whose whole range is
    occupied, or none of it, gets exactly the stock ``linspace(min_depth, max_depth)``.

Per-call keyword arguments. ``ImplicitRenderer`` passes the same kwargs to the raysampler, the
field and the raymarcher, so the raysampler sorts them: (1) its own options (listed in
:meth:`forward`) are used; (2) the raymarchers' per-call options (``background``, ``t_thresh``,
``return_aux``, ``eps``) and the field's ``aux_out`` are accepted and ignored; (3) anything else
must be an argument of ``volumetric_function`` (a named parameter of its forward, or anything if
it takes ``**kwargs``), otherwise it is a ``TypeError`` naming it: a misspelt or unsupported
sampler option is never silently ignored.
"""

import inspect
import math
from dataclasses import replace
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from pytorch3d.renderer.implicit.utils import HeterogeneousRayBundle, RayBundle
from torch import nn

from .. import ops
from ..ops.composite import DENSITY_MODES, PYTORCH3D_EPS
from .occupancy_grid import OccupancyGrid
from .ray_bundle import PackedRayBundle, exclusive_cumsum_per_ray, pack_info
from .raymarcher import RAYMARCHER_CALL_OPTIONS

# Options that may be overridden per call (forward's kwargs).
CALL_OPTIONS = ("n_rays_per_image", "n_rays_total", "n_pts_per_ray", "min_depth", "max_depth",
                "stratified_sampling", "patch_size", "dt_min", "dt_max", "dt_gamma",
                "max_samples_per_ray")
FIELD_AUX_KWARG = "aux_out"


def ndc_extent(image_height: int, image_width: int):
    """PyTorch3D's NDC half-extents (x, y) of an H x W image: the short side spans [-1, 1]."""
    return max(image_width / image_height, 1.0), max(image_height / image_width, 1.0)


def _ndc_range(image_width: int, image_height: int):
    """NDCMultinomialRaysampler's pixel-centre bounds (min_x, max_x, min_y, max_y)."""
    range_x, range_y = ndc_extent(image_height, image_width)
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


def _stratified(lengths: torch.Tensor) -> torch.Tensor:
    """One uniform draw per stratum around each sorted length (..., P) (PyTorch3D's jitter)."""
    mids = 0.5 * (lengths[..., 1:] + lengths[..., :-1])
    upper = torch.cat([mids, lengths[..., -1:]], -1)
    lower = torch.cat([lengths[..., :1], mids], -1)
    return lower + (upper - lower) * torch.rand_like(lower)


def _multinomial(weights: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) indices drawn per row without replacement, with replacement for rows with fewer
    than n non-zero weights (PyTorch3D's rule, with its random-number order)."""
    enough = (weights > 0).sum(-1) >= n
    try:
        idx = torch.multinomial(weights, n, replacement=False)
    except RuntimeError:  # some row cannot give n distinct pixels
        idx = torch.multinomial(weights, n, replacement=True)
        if bool(enough.any()):
            idx[enough] = torch.multinomial(weights[enough], n, replacement=False)
        return idx
    if not bool(enough.all()):  # torch versions that draw zero-weight pixels instead of failing
        idx[~enough] = torch.multinomial(weights[~enough], n, replacement=True)
    return idx


def _field_arguments(fn) -> Tuple[frozenset, bool]:
    """Keyword names ``fn`` (a module's forward, or a callable) accepts, and whether it takes
    ``**kwargs``; (empty, True) when its signature cannot be read."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), True
    named = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


class OccupancyGridRaysampler(nn.Module):
    """Rays from PyTorch3D cameras, sampled only where an :class:`OccupancyGrid` is occupied.

    PyTorch3D arguments (same meaning as in its raysamplers, which require the ones we default):
    ``image_width``, ``image_height``, ``n_rays_per_image``, ``n_rays_total``, ``n_pts_per_ray``
    (dense mode; default 64), ``min_depth`` (default 0), ``max_depth`` (default inf: the grid
    clips packed rays; dense sampling needs a finite one), both in ``lengths`` units,
    ``min_x``/``max_x``/``min_y``/``max_y``, ``unit_directions``, ``stratified_sampling``
    (packed: random first-step offset per ray; dense: jitter within strata).

    Own arguments:
        occupancy_grid: the grid (built and owned by the caller); None = the stock sampler.
        mode: "packed" (PackedRayBundle) or "dense" (RayBundle); default: packed with a grid,
            dense without.
        patch_size: sample one random square patch of this size per image.
        dt_min, dt_max, dt_gamma: metric step rule (defaults: the grid's ``step_size``, the
            coarsest cascade's step, 0 = fixed step). RAD-NeRF: ``dt_gamma=0``.
        max_samples_per_ray: cap of occupied samples per ray (packed mode; None: no cap).
        alpha_thre, t_thresh, eps: sigma pruning (packed mode, nerfacc's ``alpha_thre`` /
            ``early_stop_eps``; constructor-only, since a per-call ``t_thresh`` is the
            raymarcher's): with either threshold > 0 the samples are scored with
            ``volumetric_function.density(points, camera_index=..., **field_kwargs)`` (sigma)
            without grad; kept are the samples with ``alpha >= alpha_thre`` that, with
            ``t_thresh > 0``, the raymarcher reaches: the transmittance in front of them,
            ``prod(exp(-sigma_j delta_j) + eps)``, is still >= ``t_thresh`` (its stopping rule;
            nerfacc's visibility). Training with ``t_thresh`` evaluates the field with grad
            only up to where each ray turns opaque.
        update_fn, update_density_mode: let the raysampler drive the grid during training:
            on every call in training mode with grad enabled it first runs
            ``occupancy_grid.update(update_fn, step, density_mode=update_density_mode)`` and
            counts ``step`` in the ``update_step`` buffer (saved in its state_dict).
            ``update_fn`` maps points (N, 3) to (N,) densities (sigma, or per-step alpha).
    """

    def __init__(
        self,
        *,
        image_width: Optional[int] = None,
        image_height: Optional[int] = None,
        n_rays_per_image: Optional[int] = None,
        n_rays_total: Optional[int] = None,
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
        mode: Optional[str] = None,
        patch_size: Optional[int] = None,
        dt_min: Optional[float] = None,
        dt_max: Optional[float] = None,
        dt_gamma: float = 0.0,
        max_samples_per_ray: Optional[int] = None,
        alpha_thre: float = 0.0,
        t_thresh: float = 0.0,
        eps: float = PYTORCH3D_EPS,
        update_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        update_density_mode: str = "sigma",
    ) -> None:
        super().__init__()
        mode = ("packed" if occupancy_grid is not None else "dense") if mode is None else mode
        if mode not in ("packed", "dense"):
            raise ValueError(f"mode must be 'packed' or 'dense', got {mode!r}")
        if occupancy_grid is not None and not isinstance(occupancy_grid, OccupancyGrid):
            raise TypeError(f"occupancy_grid must be an OccupancyGrid, got {type(occupancy_grid).__name__}")
        if mode == "packed" and occupancy_grid is None:
            raise ValueError("mode='packed' needs occupancy_grid= (an OccupancyGrid you build and update)")
        if (alpha_thre > 0 or t_thresh > 0) and mode != "packed":
            raise ValueError("alpha_thre / t_thresh (sigma pruning) need mode='packed'")
        if alpha_thre < 0 or t_thresh < 0:
            raise ValueError(f"alpha_thre and t_thresh must be >= 0, got {alpha_thre} and {t_thresh}")
        if update_fn is not None and occupancy_grid is None:
            raise ValueError("update_fn needs occupancy_grid= (the grid it updates)")
        if update_density_mode not in DENSITY_MODES:
            raise ValueError(f"update_density_mode must be 'sigma' or 'alpha', got {update_density_mode!r}")
        if (image_width is None) != (image_height is None):
            raise ValueError("image_width and image_height must be given together")
        bounds = (min_x, max_x, min_y, max_y)
        if any(v is None for v in bounds) and not all(v is None for v in bounds):
            raise ValueError("min_x, max_x, min_y and max_y must be given together")
        if image_width is None and (bounds[0] is None or (n_rays_per_image is None and n_rays_total is None)):
            raise ValueError(
                "give image_width/image_height (image grid), or min_x/max_x/min_y/max_y with "
                "n_rays_per_image or n_rays_total (Monte Carlo xys)"
            )
        if n_rays_per_image is not None and n_rays_total is not None:
            raise ValueError("n_rays_per_image and n_rays_total cannot both be given")
        self.image_width, self.image_height = image_width, image_height
        if image_width is not None and bounds[0] is None:
            bounds = _ndc_range(image_width, image_height)
        self.min_x, self.max_x, self.min_y, self.max_y = bounds
        self.occupancy_grid = occupancy_grid
        self.mode = mode
        self.unit_directions = unit_directions
        self.alpha_thre, self.t_thresh, self.eps = float(alpha_thre), float(t_thresh), float(eps)
        self.update_fn, self.update_density_mode = update_fn, update_density_mode
        self.register_buffer("update_step", torch.zeros((), dtype=torch.long))
        self._defaults = dict(
            n_rays_per_image=n_rays_per_image, n_rays_total=n_rays_total, n_pts_per_ray=n_pts_per_ray,
            min_depth=min_depth, max_depth=max_depth, stratified_sampling=stratified_sampling,
            patch_size=patch_size, dt_min=dt_min, dt_max=dt_max, dt_gamma=dt_gamma,
            max_samples_per_ray=max_samples_per_ray,
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
            if n_rays is None:  # PyTorch3D: the smallest mask sum in the batch
                n_rays = int(weights.sum(-1).min()) if batch > 0 else 0
            elif n_rays > 0 and bool(((weights > 0).sum(-1) == 0).any()):
                raise ValueError("mask selects no pixel in some image but n_rays_per_image > 0")
            if n_rays == 0:
                return grid.new_zeros(batch, 0, 1, 2)
            return grid.reshape(-1, 2)[_multinomial(weights, n_rays)][:, :, None]
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
                if n_rays > flat.shape[0]:
                    raise ValueError(
                        f"n_rays_per_image ({n_rays}) exceeds the {flat.shape[0]} pixels of the "
                        f"image grid (pixels are drawn without replacement)"
                    )
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
    ) -> Union[PackedRayBundle, RayBundle, HeterogeneousRayBundle]:
        """Rays of ``cameras`` (batch B) and their samples (see the module doc for the kinds).

        Per-call overrides (keyword): n_rays_per_image, n_rays_total, n_pts_per_ray, min_depth,
        max_depth, stratified_sampling, patch_size, dt_min, dt_max, dt_gamma,
        max_samples_per_ray. Other kwargs: see the module doc (raymarcher options and
        ``aux_out`` are ignored; field kwargs go to ``volumetric_function.density`` when
        pruning; anything else is a TypeError).
        """
        opt, field_kwargs = self._options(kwargs, volumetric_function)
        if self.update_fn is not None and self.training and torch.is_grad_enabled():
            self.occupancy_grid.update(self.update_fn, int(self.update_step),
                                       density_mode=self.update_density_mode)
            self.update_step += 1
        rays, hetero = self._rays(cameras, mask, opt)
        o, d = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
        if self.mode == "dense":
            if self.occupancy_grid is None:
                lengths = self._stock_lengths(rays.xys, opt)
            else:
                lengths = self._dense_lengths(o, d, rays.xys.dtype, self._march(opt), opt)
            lengths = lengths.reshape(*rays.batch_shape, -1)
            if hetero is None:
                return RayBundle(rays.origins, rays.directions, lengths, rays.xys)
            keep, cam_ids, counts = hetero
            return HeterogeneousRayBundle(
                origins=_pack(rays.origins, keep), directions=_pack(rays.directions, keep),
                lengths=_pack(lengths, keep), xys=_pack(rays.xys, keep), camera_ids=cam_ids,
                camera_counts=counts.to(rays.origins.device),
            )
        if hetero is not None:
            keep = hetero[0]
            rays = replace(rays, origins=_pack(rays.origins, keep), directions=_pack(rays.directions, keep),
                           xys=_pack(rays.xys, keep), camera_ids=_pack(rays.camera_ids, keep),
                           packed_info=rays.packed_info[: int(keep.sum())])
            o, d = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
        grid = self.occupancy_grid
        jitter = torch.rand_like(o[:, 0]) if opt["stratified_sampling"] else None
        ray_idx, t0, t1, info = ops.occupancy_march(o, d, grid.box, grid.bitfield, jitter=jitter,
                                                    **self._march(opt))
        if self.alpha_thre > 0 or self.t_thresh > 0:
            ray_idx, t0, t1, info = self._prune(volumetric_function, rays, ray_idx, t0, t1, info, field_kwargs)
        return replace(rays, ray_indices=ray_idx, t_starts=t0, t_ends=t1, packed_info=info)

    def rays(
        self, cameras, *, volumetric_function=None, mask: Optional[torch.Tensor] = None, **kwargs
    ) -> Tuple[PackedRayBundle, OccupancyGrid, Dict[str, float]]:
        """What :meth:`forward` would march, without marching (for render loops that march
        incrementally, e.g. :func:`pt3d_radnerf.renderer.render_compacted`). Packed mode only;
        no grid update, no ``n_rays_total``.

        Returns:
            rays: a :class:`PackedRayBundle` with forward's origins, directions, xys and
                camera_ids and no samples;
            grid: the occupancy grid;
            march: keyword arguments of :func:`pt3d_radnerf.ops.occupancy_march` (cascades,
                resolution, t_min, t_max, dt_min, dt_max, dt_gamma, max_samples), per-call
                overrides applied.
        """
        if self.mode != "packed":
            raise ValueError("rays() needs mode='packed' (an OccupancyGridRaysampler with a grid)")
        opt, _ = self._options(kwargs, volumetric_function)
        rays, hetero = self._rays(cameras, mask, opt)
        if hetero is not None:
            raise ValueError("n_rays_total is not supported by rays() (render loops render images)")
        return rays, self.occupancy_grid, self._march(opt)

    # ---- helpers --------------------------------------------------------------------------------
    def _options(self, kwargs: Dict, volumetric_function) -> Tuple[Dict, Dict]:
        """Splits per-call kwargs into this sampler's options (defaults filled in) and the field's
        kwargs, by the rule of the module doc."""
        opt = {key: (default if kwargs.get(key) is None else kwargs[key])
               for key, default in self._defaults.items()}
        rest = {k: v for k, v in kwargs.items() if k not in CALL_OPTIONS}
        field_kwargs = {k: v for k, v in rest.items()
                        if k not in RAYMARCHER_CALL_OPTIONS and k != FIELD_AUX_KWARG}
        if field_kwargs:
            named, takes_any = (_field_arguments(volumetric_function) if volumetric_function is not None
                                else (frozenset(), False))
            unknown = sorted(k for k in field_kwargs if not takes_any and k not in named)
            if unknown:
                raise TypeError(
                    f"OccupancyGridRaysampler got unexpected keyword argument(s) {unknown}: not a "
                    f"raysampler option {list(CALL_OPTIONS)}, not a raymarcher option "
                    f"{list(RAYMARCHER_CALL_OPTIONS)}, and not an argument of the volumetric_function"
                )
        for key in ("n_rays_per_image", "n_rays_total"):
            if opt[key] is not None and int(opt[key]) <= 0:
                raise ValueError(f"{key} must be a positive number of rays, got {opt[key]}")
        if opt["n_rays_per_image"] is not None and opt["n_rays_total"] is not None:
            raise ValueError("n_rays_per_image and n_rays_total cannot both be given")
        lo, hi = float(opt["min_depth"]), float(opt["max_depth"])
        if not lo <= hi:
            raise ValueError(f"need min_depth <= max_depth, got {opt['min_depth']} and {opt['max_depth']}")
        return opt, field_kwargs

    def _rays(self, cameras, mask, opt):
        """The pixels' rays as a sample-less PackedRayBundle, and with ``n_rays_total`` the
        packing (keep (B' n,) bool, unique camera ids (M,), counts (M,)); else None."""
        grid = self.occupancy_grid
        device = torch.device(cameras.device)
        if grid is not None and grid.bitfield.device != device:
            raise ValueError(f"cameras are on {cameras.device} but the occupancy grid is on {grid.bitfield.device}")
        n_rays, hetero, cam_index = opt["n_rays_per_image"], None, None
        if opt["n_rays_total"] is not None:
            # PyTorch3D 0.7: cameras drawn with replacement; each drawn camera gets max(counts)
            # rays, of which the first count are kept.
            drawn = torch.randint(0, len(cameras), (int(opt["n_rays_total"]),), dtype=torch.long)
            cam_ids, counts = torch.unique(drawn, return_counts=True)
            cameras = cameras[cam_ids]
            mask = None if mask is None else mask[cam_ids.to(mask.device)]
            n_rays = int(counts.max())
            keep = (torch.arange(n_rays)[None] < counts[:, None]).reshape(-1).to(device)
            hetero, cam_index = (keep, cam_ids, counts), cam_ids.to(device)
        batch = cameras.R.shape[0]
        xys = self._xys(batch, device, mask, n_rays, opt["patch_size"])
        # Stock: xys stay float32 whatever the cameras' dtype; with a grid: the cameras' dtype
        # (float64 rays for float64 cameras that support it).
        xys = xys if grid is None else xys.to(cameras.R.dtype)
        origins, directions = rays_from_xys(cameras, xys, self.unit_directions)
        if grid is not None and not (bool(torch.isfinite(origins).all()) and bool(torch.isfinite(directions).all())):
            raise ValueError("cameras produce non-finite ray origins or directions (NaN/inf in R, T?)")
        cam = torch.arange(batch, device=device) if cam_index is None else cam_index
        cam = cam.reshape(batch, *([1] * (origins.dim() - 2))).expand(origins.shape[:-1])
        no_samples = torch.zeros(0, dtype=torch.long, device=device)
        rays = PackedRayBundle(origins=origins, directions=directions, xys=xys, ray_indices=no_samples,
                               t_starts=origins.new_zeros(0), t_ends=origins.new_zeros(0),
                               packed_info=pack_info(no_samples, origins.numel() // 3), camera_ids=cam)
        return rays, hetero

    def _march(self, opt) -> Dict:
        """:func:`ops.occupancy_march`'s keyword arguments for the options ``opt``."""
        grid = self.occupancy_grid
        extent = max(hi - lo for lo, hi in zip(grid.box[:3], grid.box[3:]))
        dt_min = opt["dt_min"] or grid.step_size
        dt_max = opt["dt_max"]
        if dt_max is None:
            dt_max = dt_min if opt["dt_gamma"] == 0 else max(
                dt_min, 3**0.5 * extent * 2 ** (grid.cascades - 1) / grid.resolution
            )
        return dict(cascades=grid.cascades, resolution=grid.resolution, t_min=opt["min_depth"],
                    t_max=opt["max_depth"], dt_min=dt_min, dt_max=dt_max, dt_gamma=opt["dt_gamma"],
                    max_samples=opt["max_samples_per_ray"])

    @staticmethod
    def _stock_lengths(xys: torch.Tensor, opt) -> torch.Tensor:
        """PyTorch3D's lengths (B, *spatial, P): linspace(min_depth, max_depth), jittered within
        strata with stratified_sampling (same dtype and random draws as the stock sampler)."""
        lo, hi, p = float(opt["min_depth"]), float(opt["max_depth"]), int(opt["n_pts_per_ray"])
        if hi == float("inf"):
            raise ValueError("dense sampling needs a finite max_depth")
        batch = xys.shape[0]
        rays_per_image = xys[..., 0].numel() // max(batch, 1)
        lengths = torch.linspace(lo, hi, p, dtype=xys.dtype, device=xys.device).expand(batch, rays_per_image, p)
        if opt["stratified_sampling"] and p > 0:
            lengths = _stratified(lengths)
        return lengths

    @torch.no_grad()
    def _dense_lengths(self, o, d, dtype, march, opt) -> torch.Tensor:
        """(R, P) lengths: inverse CDF of occupied length over [min_depth, max_depth]."""
        grid = self.occupancy_grid
        lo, hi, p = float(opt["min_depth"]), float(opt["max_depth"]), int(opt["n_pts_per_ray"])
        if hi == float("inf"):
            raise ValueError("dense sampling needs a finite max_depth")
        n = o.shape[0]
        t_lin = torch.linspace(lo, hi, p, dtype=dtype, device=o.device).expand(n, p)
        if opt["stratified_sampling"] and p > 1:
            t_lin = _stratified(t_lin)
        if n == 0 or p == 0 or hi == lo:
            return t_lin
        # Occupancy resolved at a quarter of the finest cell: points leave occupied cells by at
        # most 1/8 cell (a step is kept when its midpoint's cell is occupied).
        fine = min(hi - lo for lo, hi in zip(grid.box[:3], grid.box[3:])) / grid.resolution / 4
        march = dict(march, dt_min=fine, dt_max=fine, dt_gamma=0.0, max_samples=None)
        ray_idx, t0, t1, info = ops.occupancy_march(o, d, grid.box, grid.bitfield, **march)
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
        t = torch.minimum(t, t1.double()[k]).to(dtype)
        full = (occ_len >= (hi - lo) * (1 - 1e-6)) | (count == 0)
        return torch.where(full[:, None], t_lin, t)

    @torch.no_grad()
    def _prune(self, volumetric_function, rays: PackedRayBundle, ray_idx, t0, t1, info, field_kwargs):
        """Sigma pruning: keep the samples with alpha >= alpha_thre and, with t_thresh > 0, the
        ones the raymarcher reaches (transmittance in front of them >= t_thresh, its stopping rule)."""
        density = getattr(volumetric_function, "density", None)
        if density is None:
            raise ValueError("alpha_thre / t_thresh pruning needs volumetric_function.density(points, ...)")
        if ray_idx.numel() == 0:
            return ray_idx, t0, t1, info
        samples = replace(rays, ray_indices=ray_idx, t_starts=t0, t_ends=t1, packed_info=info)
        named, takes_any = _field_arguments(density)
        kwargs = {k: v for k, v in field_kwargs.items() if takes_any or k in named}
        if takes_any or "camera_index" in named:
            kwargs["camera_index"] = rays.camera_ids.reshape(-1).index_select(0, ray_idx)
        sigma = density(samples.sample_points(), **kwargs)
        sigma = sigma.reshape(-1).to(t0.dtype)
        deltas = samples.deltas()
        tau = sigma * deltas  # optical thickness per sample
        keep = 1.0 - torch.exp(-tau) >= self.alpha_thre
        if self.t_thresh > 0:
            # nerfacc's visibility: the samples the raymarcher reaches, i.e. the transmittance in
            # front of them, prod(exp(-tau_j) + eps) over the ray's earlier samples, is still >=
            # t_thresh (its stopping rule). Not "weight > 0": float32 rounds 1 - exp(-tau) to 0
            # for tau below ~3e-8, and a transparent start (the tutorial field's) would lose all
            # its samples and every gradient that could make it opaque.
            log_t = torch.log(torch.exp(-tau.double()) + self.eps)
            keep &= exclusive_cumsum_per_ray(log_t, info) >= math.log(self.t_thresh)
        ray_idx, t0, t1 = ray_idx[keep], t0[keep], t1[keep]
        return ray_idx, t0, t1, pack_info(ray_idx, info.shape[0])


def _pack(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(M, n, *rest) padded per-camera rays -> (n_kept, 1, *rest) (PyTorch3D's packed layout)."""
    return x.reshape(-1, *x.shape[2:])[keep][:, None]
