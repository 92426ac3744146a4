"""Inference render helpers: alive-ray compaction, and chunked single-pass rendering.

Both take the pieces of ``ImplicitRenderer(raysampler, raymarcher)`` with a packed
:class:`OccupancyGridRaysampler` and an :class:`OccupancyGridRaymarcher`, and pass every keyword
argument to the raysampler, the field and the raymarcher options, as ``ImplicitRenderer`` does.
They run under ``torch.no_grad()``: inference only (train through ``ImplicitRenderer``).

Relation to the single-pass path. ``ImplicitRenderer`` marches every ray to its end, evaluates
the field on all samples, then composites them with :func:`pt3d_radnerf.ops.composite`, which
stops each ray before its first sample with ``T_i < t_thresh``. :func:`render_compacted`
(torch-ngp's inference loop) keeps per-ray state ``(t, T, features, opacity, depth)`` and
repeats, while rays are alive: march ``n_step = max(min(N // n_alive, max_steps_per_iter), 1)``
samples of every alive ray from its current ``t``, evaluate the field on them, composite them
with the same kernel started at each ray's ``T`` (``transmittance=``), drop rays that stopped
(``T < t_thresh``) or ran out of samples. The marcher is memoryless in ``t``
(:func:`pt3d_radnerf.ops.occupancy_march`) and the kernel resumes exactly, so samples,
arithmetic and stopping rule are the single pass's by construction; only the samples behind each
ray's stopping point (at most ``n_step - 1`` of them) are never evaluated. The images agree up
to the rounding of summing a ray's features in several parts, given the same field values (a
field whose float32 outputs depend on the batch size can move a ray whose ``T`` lands within
rounding of ``t_thresh`` by one sample, i.e. by at most ``t_thresh * max|feature|``, which is
also the bound between any ``t_thresh`` render and a ``t_thresh=0`` one).
"""

from dataclasses import replace
from typing import Dict, Optional, Tuple

import torch

from .. import ops
from ..ops.composite import PYTORCH3D_EPS
from .occupancy_grid import OccupancyGrid
from .ray_bundle import PackedRayBundle, pack_info, packed_field_outputs
from .raymarcher import OccupancyGridRaymarcher, blend_background
from .raysampler import OccupancyGridRaysampler


def _field(volumetric_function, bundle: PackedRayBundle, cameras, kwargs):
    """Evaluates the field on a packed bundle: densities (S,) and features (S, C)."""
    densities, features = volumetric_function(ray_bundle=bundle, cameras=cameras, **kwargs)
    return packed_field_outputs(densities, features, bundle.n_samples)


def _check_packed(raysampler) -> None:
    if not isinstance(raysampler, OccupancyGridRaysampler) or raysampler.mode != "packed":
        raise ValueError("the render helpers need an OccupancyGridRaysampler with mode='packed'")


def _options(raymarcher: Optional[OccupancyGridRaymarcher], kwargs) -> Dict:
    """The raymarcher's settings with the per-call overrides its forward() accepts."""
    rm = OccupancyGridRaymarcher() if raymarcher is None else raymarcher
    opt = dict(background=rm.background, t_thresh=rm.t_thresh, return_aux=rm.return_aux, eps=rm.eps)
    for key in opt:
        if kwargs.get(key) is not None:
            opt[key] = kwargs[key]
    return dict(opt, density_mode=rm.density_mode)


@torch.no_grad()
def composite_compacted(
    volumetric_function,
    rays: PackedRayBundle,
    occupancy_grid: OccupancyGrid,
    march: Dict,
    *,
    cameras=None,
    t_thresh: float = 1e-4,
    eps: float = PYTORCH3D_EPS,
    density_mode: str = "alpha",
    max_steps_per_iter: int = 8,
    field_kwargs: Optional[Dict] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dict[str, int]]:
    """Marches, evaluates and composites ``rays`` incrementally, compacting the alive set.

    Args:
        volumetric_function: called as ``f(ray_bundle=PackedRayBundle, cameras=cameras,
            **field_kwargs)`` on the alive rays' next samples; returns densities (S,) (alphas, or
            sigmas with ``density_mode="sigma"``) and features (S, C). The bundle keeps all
            rays (origins, directions, xys, camera_ids of ``rays``) and indexes them with
            ``ray_indices``, so per-camera inputs (audio, frame_index) work unchanged.
        rays: the rays (R = prod(batch) of them); their samples, if any, are ignored.
        occupancy_grid, march: the grid and :func:`pt3d_radnerf.ops.occupancy_march`'s keyword
            arguments (``OccupancyGridRaysampler.rays`` returns both); ``max_samples`` caps the
            samples per ray as in the single pass.
        t_thresh, eps, density_mode: compositing, as in :class:`OccupancyGridRaymarcher`.
        max_steps_per_iter: most samples per alive ray and iteration (torch-ngp's 8). Since
            ``n_alive * n_step <= R``, no field call sees more samples than there are rays.

    Returns:
        features (R, C), opacity (R,), depth (R,) (``sum w t``, ``lengths`` units) and stats
        ``{"samples": field evaluations, "iterations": loop iterations}``.
    """
    if density_mode not in ("alpha", "sigma"):
        raise ValueError(f"density_mode must be 'alpha' or 'sigma', got {density_mode!r}")
    if max_steps_per_iter < 1:
        raise ValueError(f"max_steps_per_iter must be >= 1, got {max_steps_per_iter}")
    field_kwargs = {} if field_kwargs is None else field_kwargs
    march = dict(march)
    cap = march.pop("max_samples", None)
    o = rays.origins.reshape(-1, 3)
    d = rays.directions.reshape(-1, 3)
    n = o.shape[0]
    alive = torch.arange(n, device=o.device)
    t_next = torch.full((n,), -float("inf"), dtype=o.dtype, device=o.device)  # resume depths
    used = 0  # samples so far of every alive ray (survivors always got all n_step asked for)
    state = None  # (trans, features, opacity, depth), allocated once the dtype is known
    stats = {"samples": 0, "iterations": 0}
    # The first pass always runs (an empty image still learns the feature size from the field).
    while state is None or (alive.numel() > 0 and (cap is None or used < cap)):
        n_step = max(min(n // max(alive.numel(), 1), max_steps_per_iter), 1)
        if cap is not None:
            n_step = min(n_step, cap - used)
        # index_select / index_copy_ / index_add_ (alive is unique): advanced indexing of these
        # rows runs ~10x slower on the CPU.
        ri, t0, t1, info = ops.occupancy_march(
            o.index_select(0, alive), d.index_select(0, alive), occupancy_grid.box, occupancy_grid.bitfield,
            ray_t_min=t_next.index_select(0, alive), max_samples=n_step, **march,
        )
        stats["iterations"] += 1
        count = info[:, 1]
        if state is None or t0.numel() > 0:  # the first call also reports the feature size
            rid = alive.index_select(0, ri)
            bundle = replace(rays, ray_indices=rid, t_starts=t0, t_ends=t1, packed_info=pack_info(rid, n))
            values, feats = _field(volumetric_function, bundle, cameras, field_kwargs)
            stats["samples"] += t0.numel()
            if state is None:
                dtype = torch.promote_types(values.dtype, feats.dtype)
                dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
                state = (torch.ones(n, dtype=dtype, device=o.device),
                         torch.zeros(n, feats.shape[1], dtype=dtype, device=o.device),
                         torch.zeros(n, dtype=dtype, device=o.device),
                         torch.zeros(n, dtype=dtype, device=o.device))
            trans, acc_f, acc_o, acc_d = state
            # The single pass's kernel, resumed at each alive ray's transmittance (info indexes
            # this call's samples per alive ray).
            out = ops.composite(values, feats, info, bundle.t_mids(),
                                bundle.deltas() if density_mode == "sigma" else None, density_mode,
                                t_thresh, eps, transmittance=trans.index_select(0, alive))
            trans.index_copy_(0, alive, out.transmittance.to(trans.dtype))
            acc_f.index_add_(0, alive, out.features.to(acc_f.dtype))
            acc_o.index_add_(0, alive, out.opacity.to(acc_o.dtype))
            acc_d.index_add_(0, alive, out.depth.to(acc_d.dtype))
            got = (count > 0).nonzero()[:, 0]
            last = info[:, 0].index_select(0, got) + count.index_select(0, got) - 1
            t_next.index_copy_(0, alive.index_select(0, got), t1.index_select(0, last))
        used += n_step
        # Alive: not out of samples (got all it asked for) and not terminated.
        keep = count == n_step
        if t_thresh > 0:
            keep &= state[0].index_select(0, alive) >= t_thresh
        alive = alive[keep]
    _, feats, opacity, depth = state
    return feats, opacity, depth, stats


@torch.no_grad()
def render_compacted(
    cameras,
    volumetric_function,
    raysampler: OccupancyGridRaysampler,
    raymarcher: Optional[OccupancyGridRaymarcher] = None,
    *,
    max_steps_per_iter: int = 8,
    **kwargs,
):
    """Inference fast path for ``ImplicitRenderer(raysampler, raymarcher)`` (see module doc).

    Args:
        cameras: PyTorch3D cameras (batch B).
        volumetric_function: the field, as for :func:`composite_compacted` (e.g.
            :class:`pt3d_radnerf.models.AudioRadianceField`; ``audio=``, ``frame_index=``,
            ``eye=`` go in ``kwargs``).
        raysampler: a packed :class:`OccupancyGridRaysampler`: pixels, rays, grid, step rule.
            Stratified sampling and sigma pruning are ignored (the march has no jitter).
        raymarcher: background, t_thresh, eps, density_mode, return_aux (default
            ``OccupancyGridRaymarcher()``); ``background=``, ``t_thresh=``, ``return_aux=`` may
            be given per call, as to the raymarcher.
        max_steps_per_iter: torch-ngp's cap of samples per alive ray and iteration.

    Returns:
        images (*batch, C + 1) = ``cat(features (+ background), opacity)``, the layout of
        ``OccupancyGridRaymarcher``; with return_aux, ``(images, aux)`` where aux has ``depth``
        and ``opacity`` (*batch) and the ints ``samples`` and ``iterations``.
    """
    _check_packed(raysampler)
    opt = _options(raymarcher, kwargs)
    rays, grid, march = raysampler.rays(cameras, volumetric_function=volumetric_function, **kwargs)
    feats, opacity, depth, stats = composite_compacted(
        volumetric_function, rays, grid, march, cameras=cameras, t_thresh=opt["t_thresh"],
        eps=opt["eps"], density_mode=opt["density_mode"], max_steps_per_iter=max_steps_per_iter,
        field_kwargs=kwargs,
    )
    shape = rays.batch_shape
    feats, opacity, depth = feats.view(*shape, -1), opacity.view(shape), depth.view(shape)
    images = torch.cat([blend_background(feats, opacity, opt["background"]), opacity[..., None]], -1)
    if opt["return_aux"]:
        return images, dict(depth=depth, opacity=opacity, **stats)
    return images


@torch.no_grad()
def render_chunked(
    cameras,
    volumetric_function,
    raysampler: OccupancyGridRaysampler,
    raymarcher: Optional[OccupancyGridRaymarcher] = None,
    *,
    chunk: int = 1 << 16,
    **kwargs,
):
    """``ImplicitRenderer(raysampler, raymarcher)`` without compaction, evaluating the field on
    at most ``chunk`` samples at a time: the single-pass image with bounded field memory.

    Same arguments and return value as the raymarcher inside ``ImplicitRenderer`` (images, or
    ``(images, aux)`` with return_aux); ``raysampler`` must be a packed OccupancyGridRaysampler.
    """
    _check_packed(raysampler)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    raymarcher = OccupancyGridRaymarcher() if raymarcher is None else raymarcher
    bundle = raysampler(cameras=cameras, volumetric_function=volumetric_function, **kwargs)
    densities, features = [], []
    for s in range(0, max(bundle.n_samples, 1), chunk):  # at least one call: reports C
        ri = bundle.ray_indices[s : s + chunk]
        part = replace(bundle, ray_indices=ri, t_starts=bundle.t_starts[s : s + chunk],
                       t_ends=bundle.t_ends[s : s + chunk], packed_info=pack_info(ri, bundle.n_rays))
        values, feats = _field(volumetric_function, part, cameras, kwargs)
        densities.append(values)
        features.append(feats)
    return raymarcher(rays_densities=torch.cat(densities), rays_features=torch.cat(features),
                      ray_bundle=bundle, **kwargs)
