"""Occupancy-guided ray marching (packed samples) and the occupancy-grid update helpers.

Grid layout shared by the kernel, :class:`pt3d_radnerf.renderer.OccupancyGrid` and
``reference.py``: cascade ``c`` covers the base box scaled by ``2^c`` about its centre and is
split into ``res^3`` cells (``res`` a power of two); cell ``(x, y, z)`` of cascade ``c`` has flat
index ``c * res^3 + morton(x, y, z)``; its bit is bit ``k`` of byte ``i`` for index ``8 i + k``.
"""

from typing import Optional, Tuple

import torch

from .._backend import custom_ops
from .grid_bits import morton3d
from .ray_aabb import AabbLike, as_aabb

_ops = custom_ops()


@torch.library.register_fake("pt3d_radnerf::occupancy_march")
def _occupancy_march_fake(rays_o, rays_d, jitter, ray_t_min, aabb, bitfield, cascades, resolution, t_min,
                          t_max, dt_min, dt_max, dt_gamma, max_samples):
    # The sample count depends on the bitfield's contents: a fresh unbacked size per call (meta tensors,
    # which cannot carry one, get torch's "data-dependent output shape" error).
    s = torch.library.get_ctx().new_dynamic_size()
    n = rays_o.shape[0]
    return (rays_o.new_empty(s, dtype=torch.long), rays_o.new_empty(s), rays_o.new_empty(s),
            rays_o.new_empty(n, 2, dtype=torch.long))


def occupancy_march(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    aabb: AabbLike,
    bitfield: torch.Tensor,
    *,
    cascades: int,
    resolution: int,
    t_min: float = 0.0,
    t_max: float = float("inf"),
    dt_min: float,
    dt_max: Optional[float] = None,
    dt_gamma: float = 0.0,
    jitter: Optional[torch.Tensor] = None,
    ray_t_min: Optional[torch.Tensor] = None,
    max_samples: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Marches rays through an occupancy bitfield and returns the kept samples, packed.

    Each ray ``o + t d`` is clipped to the outermost cascade box and to ``[t_min, t_max]`` (both
    in units of ``|d|``, i.e. PyTorch3D ``lengths``) and starts at
    ``near = max(box entry, t_min, ray_t_min[i])``. It is stepped with the metric step
    ``dt = clamp(t |d| * dt_gamma, dt_min, dt_max)``, i.e. ``t_{k+1} = t_k + dt / |d|``; the first
    step starts at ``near + jitter * dt(near) / |d|``. A step is kept when the cell under its
    midpoint is occupied. Empty space is skipped in closed form: from an empty cell the march
    jumps over the largest empty aligned block around it (up to 64^3 cells, via an 8^3-block
    summary of the bitfield) to the first lattice step past it, so the kept samples are bit for
    bit those of a lookup at every step (``PT3D_RADNERF_MARCH_NO_SKIP=1`` forces every-step
    lookups, for tests; see also ``reference.occupancy_march``). The layout is deterministic:
    CPU marches groups of rays into buffers concatenated in ray order, CUDA runs a count pass,
    an exclusive prefix sum and a fill pass; no ray is ever dropped and nothing is preallocated.

    Resuming: the lattice depends on nothing but ``t`` (it is kept in ``lengths`` units, so a
    returned ``t_end`` is the next lattice point bit for bit). Marching with
    ``max_samples=n`` and then again with ``ray_t_min`` = each ray's last ``t_end`` (and no
    jitter) yields exactly the continuation of a single march: concatenated per ray, the chunks
    equal the single pass (tested). A ray that got fewer than ``n`` samples is finished.

    Args:
        rays_o, rays_d: (N, 3) float32/float64 rays (``d`` of any non-zero length).
        aabb: (6,) base (cascade 0) box.
        bitfield: (cascades * resolution^3 / 8,) uint8.
        cascades, resolution: grid shape (resolution a power of two).
        t_min, t_max: depth range in units of ``|d|`` (PyTorch3D ``lengths`` units).
        dt_min, dt_max, dt_gamma: metric step rule (``dt_max`` defaults to ``dt_min``).
        jitter: optional (N,) offsets in [0, 1) of the first step (stratified training).
        ray_t_min: optional (N,) per-ray start depth (the resume point), same dtype as the rays;
            ``-inf`` = no extra bound, ``+inf`` or NaN = finished ray (no samples).
        max_samples: keep at most this many samples per ray (None or -1: unlimited).

    Returns:
        ray_indices: (S,) int64; t_starts, t_ends: (S,) in units of ``|d|``, sorted per ray;
        packed_info: (N, 2) int64 ``(start, count)``. No gradients (t values are constants,
        like PyTorch3D's ``lengths``; points stay differentiable through the rays).

    Raises:
        ValueError: a step that cannot advance ``t`` in the rays' float precision (``dt_min``
            too small for the ray's depth), or a ray spanning more than 2^22 lattice steps in
            one call (bounded work: use a larger ``dt_min`` or ``dt_gamma``), naming the ray and
            the step arguments; jitter outside [0, 1).
    """
    if not isinstance(rays_o, torch.Tensor) or not isinstance(rays_d, torch.Tensor):
        raise TypeError("rays_o and rays_d must be torch.Tensor")
    return _ops.occupancy_march(
        rays_o.detach().contiguous(),
        rays_d.detach().contiguous(),
        None if jitter is None else jitter.detach().contiguous(),
        None if ray_t_min is None else ray_t_min.detach().contiguous(),
        as_aabb(aabb, rays_o),
        bitfield.contiguous(),
        int(cascades),
        int(resolution),
        float(t_min),
        float(t_max),
        float(dt_min),
        float(dt_min if dt_max is None else dt_max),
        float(dt_gamma),
        -1 if max_samples is None else int(max_samples),
    )


# ---- grid update helpers (elementwise / stencil work: vectorised torch on any device) -----------
def dense_to_morton_index(resolution: int, device=None) -> torch.Tensor:
    """(res^3,) int64 morton code of each cell listed in dense order ``(x * res + y) * res + z``:
    ``morton_grid[:, idx]`` is the dense grid, ``dense_grid[:, ...] -> out[:, idx]`` goes back."""
    r = torch.arange(resolution, device=device, dtype=torch.int32)
    xyz = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return morton3d(xyz).long()


def dilate_occupancy(bits: torch.Tensor, resolution: int, iterations: int = 1) -> torch.Tensor:
    """6-neighbour dilation of boolean occupancy, morton order per cascade.

    Args:
        bits: (cascades, res^3) bool, morton order.
    Returns:
        (cascades, res^3) bool: a cell is set when it or a face neighbour was set.
    """
    if bits.dim() != 2 or bits.shape[1] != resolution**3:
        raise ValueError(f"bits must have shape (cascades, resolution^3 = {resolution**3}), got {tuple(bits.shape)}")
    if iterations <= 0:
        return bits
    perm = dense_to_morton_index(resolution, bits.device)
    dense = bits[:, perm].reshape(-1, resolution, resolution, resolution)
    for _ in range(iterations):
        grown = dense.clone()
        for axis in (1, 2, 3):
            n = resolution
            lo = [slice(None)] * 4
            hi = [slice(None)] * 4
            lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
            grown[tuple(lo)] |= dense[tuple(hi)]
            grown[tuple(hi)] |= dense[tuple(lo)]
        dense = grown
    out = torch.empty_like(bits)
    out[:, perm] = dense.reshape(bits.shape[0], -1)
    return out


def decayed_max_update(
    grid: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, decay: float
) -> torch.Tensor:
    """``grid[i] = max(grid[i] * decay, value)`` for flat ``indices``; cells at -1 (unseen) stay.
    A cell listed several times gets the max over its values (random and occupied draws overlap).

    Args:
        grid: (cascades, res^3) float; indices: (M,) int64 flat indices; values: (M,).
    Returns:
        the updated grid (a new tensor).
    """
    if indices.shape != values.shape or indices.dim() != 1:
        raise ValueError(f"indices and values must both have shape (M,), got {tuple(indices.shape)} and "
                         f"{tuple(values.shape)}")
    flat = grid.reshape(-1).clone()
    old = flat[indices]
    new = torch.where(old < 0, old, torch.maximum(old * decay, values.to(flat.dtype)))
    # A scatter-max, not an indexed write: with repeated indices an indexed write keeps whichever
    # copy lands last, which on several threads is a race (max is order-independent).
    return flat.scatter_reduce_(0, indices, new, reduce="amax", include_self=False).view_as(grid)


def occupancy_threshold(grid: torch.Tensor, thresh: float) -> float:
    """``min(mean of the seen cells (>= 0), thresh)``; ``thresh`` when no cell is seen."""
    seen = grid[grid >= 0]
    if seen.numel() == 0:
        return float(thresh)
    return min(float(seen.mean()), float(thresh))
