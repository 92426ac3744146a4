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


# ---- compositing ----------------------------------------------------------------------------
def composite_dense(values, features, ts=None, deltas=None, mode="alpha", t_thresh=0.0, eps=1e-10):
    """Twin of :func:`pt3d_radnerf.ops.composite_dense` with cumulative products:
    values (R, P), features (R, P, C) -> features (R, C), opacity (R,), depth (R,), weights (R, P)."""
    alpha = 1.0 - torch.exp(-values * deltas) if mode == "sigma" else values
    factor = 1.0 + eps - alpha
    trans = torch.cumprod(torch.cat([torch.ones_like(factor[..., :1]), factor[..., :-1]], -1), -1)
    if t_thresh > 0:
        # A ray stops at its first sample whose transmittance is below the threshold.
        alive = torch.cumprod((trans >= t_thresh).to(values.dtype), -1)
        trans = trans * alive
    weights = alpha * trans
    ts = torch.zeros_like(values) if ts is None else ts
    return (weights[..., None] * features).sum(-2), weights.sum(-1), (weights * ts).sum(-1), weights


def composite(values, features, packed_info, ts=None, deltas=None, mode="alpha", t_thresh=0.0, eps=1e-10):
    """Twin of :func:`pt3d_radnerf.ops.composite`: scatters packed samples into a padded (R, P)
    layout (padding has alpha 0), composites densely, gathers the weights back."""
    starts, counts = packed_info[:, 0], packed_info[:, 1]
    n_rays, p = packed_info.shape[0], int(counts.max().item()) if packed_info.numel() else 0
    slot = torch.arange(p, device=values.device)
    valid = slot[None, :] < counts[:, None]  # (R, P)
    index = (starts[:, None] + slot[None, :]).clamp(max=max(values.shape[0] - 1, 0))
    c = features.shape[-1]

    def gather(x, fill):
        if x is None:
            return None
        out = x[index] if x.numel() else torch.full(index.shape, fill, dtype=values.dtype)
        return torch.where(valid, out, torch.full_like(out, fill))

    v = gather(values, 0.0)
    f = features[index] * valid[..., None] if features.numel() else features.new_zeros(n_rays, p, c)
    feats, opacity, depth, w = composite_dense(v, f, gather(ts, 0.0), gather(deltas, 0.0), mode, t_thresh, eps)
    weights = torch.zeros_like(values)
    weights[index[valid]] = w[valid]
    return feats, opacity, depth, weights
