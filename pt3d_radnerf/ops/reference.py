"""Pure-PyTorch twins of every kernel in pt3d_radnerf.ops.

Written independently of the C++ math (vectorised tensor code, not a transliteration) so
tests comparing the two can fail. Also usable as a slow fallback anywhere torch runs.
"""

from typing import Tuple

import torch


# ---- ray / box ---------------------------------------------------------------------------
def near_far_from_aabb(
    rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor, min_near: float = 0.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Twin of :func:`pt3d_radnerf.ops.near_far_from_aabb`: (..., 3) rays -> near, far, hit (...)."""
    box = torch.as_tensor(aabb, dtype=rays_o.dtype, device=rays_o.device).reshape(2, 3)
    lo, hi = box[0], box[1]
    parallel = rays_d == 0
    safe_d = torch.where(parallel, torch.ones_like(rays_d), rays_d)
    t0 = (lo - rays_o) / safe_d
    t1 = (hi - rays_o) / safe_d
    t_lo = torch.minimum(t0, t1)
    t_hi = torch.maximum(t0, t1)
    inf = torch.full_like(t_lo, float("inf"))
    inside_slab = (rays_o >= lo) & (rays_o <= hi)
    # A parallel axis imposes no bound when the origin is inside its slab, else empties the ray.
    t_lo = torch.where(parallel, -inf, t_lo)
    t_hi = torch.where(parallel, inf, t_hi)
    near = torch.clamp(t_lo.amax(dim=-1), min=min_near)
    far = t_hi.amin(dim=-1)
    finite = torch.isfinite(rays_o).all(-1) & torch.isfinite(rays_d).all(-1)
    hit = (
        (far > near)
        & (inside_slab | ~parallel).all(-1)
        & (~parallel).any(-1)
        & finite
    )
    fill = torch.full_like(near, float(min_near))
    return torch.where(hit, near, fill), torch.where(hit, far, fill), hit


# ---- occupancy-grid integer helpers -----------------------------------------------------
def morton3d(coords: torch.Tensor) -> torch.Tensor:
    """Twin of :func:`pt3d_radnerf.ops.morton3d`, bit by bit: (N, 3) -> (N,) int32."""
    coords = coords.to(torch.int64)
    code = torch.zeros(coords.shape[0], dtype=torch.int64, device=coords.device)
    for bit in range(10):
        for axis in range(3):
            code |= ((coords[:, axis] >> bit) & 1) << (3 * bit + axis)
    return code.to(torch.int32)


def morton3d_invert(codes: torch.Tensor) -> torch.Tensor:
    """Twin of :func:`pt3d_radnerf.ops.morton3d_invert`: (N,) -> (N, 3) int32."""
    codes = codes.to(torch.int64)
    coords = torch.zeros(codes.shape[0], 3, dtype=torch.int64, device=codes.device)
    for bit in range(10):
        for axis in range(3):
            coords[:, axis] |= ((codes >> (3 * bit + axis)) & 1) << bit
    return coords.to(torch.int32)


def packbits(grid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Twin of :func:`pt3d_radnerf.ops.packbits`: flat cells -> uint8 bytes, LSB first."""
    bits = (grid.reshape(-1, 8) > threshold).to(torch.int64)
    weights = 2 ** torch.arange(8, device=grid.device, dtype=torch.int64)
    return (bits * weights).sum(-1).to(torch.uint8)


# ---- occupancy-guided marching (brute force: every lattice step is looked up) -------------
def cascade_boxes(aabb: torch.Tensor, cascades: int, resolution: int):
    """Per cascade: lower corners (C, 3), upper corners (C, 3), cell sizes (C, 3)."""
    box = aabb.reshape(2, 3)
    ctr = (box[0] + box[1]) * 0.5
    scale = (2.0 ** torch.arange(cascades, dtype=aabb.dtype, device=aabb.device))[:, None]
    half = (box[1] - box[0]) * 0.5 * scale
    return ctr - half, ctr + half, half * 2 / resolution


def occupancy_cell_index(
    points: torch.Tensor, dt: torch.Tensor, aabb: torch.Tensor, cascades: int, resolution: int
) -> torch.Tensor:
    """Flat cell index ``c * res^3 + morton(cell)`` deciding a sample at ``points`` (M, 3) taken
    with steps ``dt`` (M,): the cascade is the coarser of the finest one containing the point and
    the finest one whose cells are at least ``dt`` wide."""
    lo, hi, cs = cascade_boxes(aabb, cascades, resolution)
    inside = ((points[:, None] >= lo) & (points[:, None] <= hi)).all(-1)  # (M, C)
    c_pos = torch.where(
        inside.any(-1), inside.float().argmax(-1), torch.full_like(dt, cascades - 1, dtype=torch.long)
    )
    min_cs = cs.amin(-1)[: cascades - 1]  # only cascades below the last can be skipped
    c_dt = (min_cs[None] < dt[:, None]).sum(-1)
    c = torch.maximum(c_pos, c_dt)
    cell = torch.floor((points - lo[c]) / cs[c]).clamp(0, resolution - 1).long()
    return c * resolution**3 + morton3d(cell).long()


def occupancy_march(
    rays_o, rays_d, aabb, bitfield, *, cascades, resolution, t_min=0.0, t_max=float("inf"),
    dt_min, dt_max=None, dt_gamma=0.0, jitter=None, max_samples=None,
):
    """Twin of :func:`pt3d_radnerf.ops.occupancy_march`: steps every ray over its whole
    clipped range (no skipping) and keeps the steps whose midpoint cell is occupied."""
    dt_max = dt_min if dt_max is None else dt_max
    box = torch.as_tensor(aabb, dtype=rays_o.dtype, device=rays_o.device).reshape(-1)
    lo, hi, _ = cascade_boxes(box, cascades, resolution)
    outer = torch.cat([lo[-1], hi[-1]])
    near, far, hit = near_far_from_aabb(rays_o, rays_d, outer, t_min)
    far = torch.clamp(far, max=t_max)
    d = rays_d
    norm = torch.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2])
    u = d / norm[:, None]
    far_m, near_m = far * norm, near * norm

    def step(t):
        return torch.clamp(t * dt_gamma, dt_min, dt_max)

    t = near_m + (0.0 if jitter is None else jitter * step(near_m))
    bits = ((bitfield[:, None].long() >> torch.arange(8, device=bitfield.device)) & 1).bool()
    bits = bits.reshape(-1)
    limit = float("inf") if max_samples is None else max_samples
    count = torch.zeros_like(near, dtype=torch.long)
    active = hit & (far > near) & (t < far_m) & (count < limit)
    rays, starts, ends = [], [], []
    while bool(active.any()):
        idx = active.nonzero()[:, 0]
        ti = t[idx]
        dt = step(ti)
        stuck = ~(ti + dt > ti)  # dt below t's precision: the kernel stops such rays
        if bool(stuck.any()):
            active[idx[stuck]] = False
            idx, ti, dt = idx[~stuck], ti[~stuck], dt[~stuck]
        te = torch.minimum(ti + dt, far_m[idx])
        mid = (ti + te) * 0.5
        x = rays_o[idx] + mid[:, None] * u[idx]
        keep = bits[occupancy_cell_index(x, dt, box, cascades, resolution)]
        rays.append(idx[keep])
        starts.append(ti[keep] / norm[idx[keep]])
        ends.append(te[keep] / norm[idx[keep]])
        count[idx[keep]] += 1
        t[idx] = ti + dt
        active = active & (t < far_m) & (count < limit)
    if rays:
        ray_idx = torch.cat(rays)
        order = torch.sort(ray_idx, stable=True).indices  # per step -> per ray, t stays sorted
        ray_idx, t0, t1 = ray_idx[order], torch.cat(starts)[order], torch.cat(ends)[order]
    else:
        ray_idx = torch.zeros(0, dtype=torch.long, device=rays_o.device)
        t0 = t1 = rays_o.new_zeros(0)
    start = torch.cumsum(count, 0) - count
    return ray_idx, t0, t1, torch.stack([start, count], -1)
