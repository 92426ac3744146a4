"""Pure-PyTorch twins of every kernel in pt3d_radnerf.ops.

Written independently of the C++ math (vectorised tensor code, not a transliteration) so
tests comparing the two can fail. Also usable as a slow fallback anywhere torch runs.
"""

import math
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
def _composite_padded(values, features, ts, deltas, valid, density_mode, t_thresh, eps, transmittance):
    """Composites (R, P) padded samples of which ``valid`` (R, P) are real (a prefix per ray):
    returns features (R, C), opacity (R,), depth (R,), weights (R, P), transmittance (R,)."""
    alpha = 1.0 - torch.exp(-values * deltas) if density_mode == "sigma" else values
    alpha = torch.where(valid, alpha, torch.zeros_like(alpha))
    factor = torch.where(valid, 1.0 + eps - alpha, torch.ones_like(alpha))
    t_in = torch.ones_like(values[..., 0]) if transmittance is None else transmittance
    # T_0 .. T_P of each ray: the initial transmittance times the running product of factors.
    trans = t_in[..., None] * torch.cumprod(torch.cat([torch.ones_like(factor[..., :1]), factor], -1), -1)
    alive = valid
    if t_thresh > 0:
        # A ray stops at its first sample whose transmittance is below the threshold.
        alive = valid & (torch.cumprod((trans[..., :-1] >= t_thresh).to(values.dtype), -1) > 0)
    used = alive.sum(-1)  # samples composited per ray
    weights = torch.where(alive, alpha * trans[..., :-1], torch.zeros_like(alpha))
    ts = torch.zeros_like(values) if ts is None else ts
    t_out = trans.gather(-1, used[..., None])[..., 0]
    return (weights[..., None] * features).sum(-2), weights.sum(-1), (weights * ts).sum(-1), weights, t_out


def composite_dense(values, features, ts=None, deltas=None, density_mode="alpha", t_thresh=0.0, eps=1e-10,
                    transmittance=None):
    """Twin of :func:`pt3d_radnerf.ops.composite_dense` with cumulative products:
    values (R, P), features (R, P, C) -> features (R, C), opacity (R,), depth (R,), weights (R, P),
    transmittance (R,)."""
    valid = torch.ones_like(values, dtype=torch.bool)
    return _composite_padded(values, features, ts, deltas, valid, density_mode, t_thresh, eps, transmittance)


def composite(values, features, packed_info, ts=None, deltas=None, density_mode="alpha", t_thresh=0.0,
              eps=1e-10, transmittance=None):
    """Twin of :func:`pt3d_radnerf.ops.composite`: gathers packed samples into a padded (R, P)
    layout, composites densely, scatters the weights back."""
    starts, counts = packed_info[:, 0], packed_info[:, 1]
    n_rays, p = packed_info.shape[0], int(counts.max().item()) if packed_info.numel() else 0
    slot = torch.arange(p, device=values.device)
    valid = slot[None, :] < counts[:, None]  # (R, P)
    index = (starts[:, None] + slot[None, :]).clamp(max=max(values.shape[0] - 1, 0))
    c = features.shape[-1]

    def gather(x):
        if x is None:
            return None
        out = x[index] if x.numel() else torch.zeros(index.shape, dtype=values.dtype)
        return torch.where(valid, out, torch.zeros_like(out))

    f = features[index] * valid[..., None] if features.numel() else features.new_zeros(n_rays, p, c)
    feats, opacity, depth, w, t_out = _composite_padded(
        gather(values), f, gather(ts), gather(deltas), valid, density_mode, t_thresh, eps, transmittance)
    weights = torch.zeros_like(values)
    weights[index[valid]] = w[valid]
    return feats, opacity, depth, weights, t_out

# ---- encoders -----------------------------------------------------------------------------
_HASH_PRIMES = (1, 2654435761, 805459861)


def grid_encode(
    inputs: torch.Tensor,
    embeddings: torch.Tensor,
    offsets,
    scales,
    gridtype: str = "hash",
    align_corners: bool = False,
    interpolation: str = "linear",
    bound: float = 1.0,
) -> torch.Tensor:
    """Twin of :func:`pt3d_radnerf.ops.grid_encode`: (N, D) -> (N, L*C), autograd does the VJPs.

    All 2^D corners of a level are gathered at once; integer arithmetic in int64, reduced to
    uint32 where the kernel wraps.
    """
    n, dim = inputs.shape
    corner_bits = torch.tensor(
        [[(k >> d) & 1 for d in range(dim)] for k in range(2**dim)], device=inputs.device
    )  # (K, D)
    u = (inputs + bound) / (2 * bound)
    inside = ((u >= 0) & (u <= 1)).all(-1, keepdim=True)  # (N, 1)
    feats = []
    for level, scale in enumerate(scales):
        lo, hi = int(offsets[level]), int(offsets[level + 1])
        rows = hi - lo
        pos = u * scale + (0.0 if align_corners else 0.5)
        cell = torch.floor(pos).detach()
        t = pos - cell
        if interpolation == "smoothstep":
            t = t * t * (3 - 2 * t)
        corners = cell.long()[:, None, :] + corner_bits  # (N, K, D)
        weights = torch.where(corner_bits.bool(), t[:, None, :], 1 - t[:, None, :]).prod(-1)
        # Dense strides while the running stride fits the table (torch-ngp's rule).
        side = math.ceil(scale) + (1 if align_corners else 2)
        stride, strides = 1, []
        for _ in range(dim):
            strides.append(stride if stride <= rows else 0)
            stride = stride * side if stride <= rows else stride
        if gridtype == "hash" and stride > rows:
            index = torch.zeros_like(corners[..., 0])
            for d in range(dim):
                index = index ^ ((corners[..., d] * _HASH_PRIMES[d]) & 0xFFFFFFFF)
        else:
            index = (corners * torch.tensor(strides, device=inputs.device)).sum(-1) & 0xFFFFFFFF
        index = index % rows
        values = embeddings[lo + index]  # (N, K, C)
        level_feat = (weights[..., None].to(values.dtype) * values).sum(1)
        feats.append(torch.where(inside, level_feat, torch.zeros_like(level_feat)))
    return torch.cat(feats, dim=-1)


def _sh_z_part(z: torch.Tensor, l: int, m: int) -> torch.Tensor:
    """sum_k (-1)^k 2^-l C(l,k) C(2l-2k,l) (l-2k)!/(l-2k-m)! z^(l-2k-m) (Cartesian real-SH form)."""
    total = torch.zeros_like(z)
    for k in range((l - m) // 2 + 1):
        coef = ((-1) ** k) * math.comb(l, k) * math.comb(2 * l - 2 * k, l)
        coef *= math.factorial(l - 2 * k) / math.factorial(l - 2 * k - m) / 2**l
        total = total + coef * z ** (l - 2 * k - m)
    return total


def sh_encode(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Twin of :func:`pt3d_radnerf.ops.sh_encode` from the explicit Cartesian formula:
    (N, 3) -> (N, degree^2), Condon-Shortley phase, tiny-cuda-nn order."""
    x, y, z = dirs.unbind(-1)
    out = []
    for l in range(degree):
        band = {}
        for m in range(l + 1):
            # A_m + i B_m = (x + iy)^m expanded with the binomial theorem.
            a = sum(math.comb(m, p) * x**p * y ** (m - p) * math.cos((m - p) * math.pi / 2)
                    for p in range(m + 1))
            b = sum(math.comb(m, p) * x**p * y ** (m - p) * math.sin((m - p) * math.pi / 2)
                    for p in range(m + 1))
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            zp = _sh_z_part(z, l, m)
            if m == 0:
                band[0] = norm * zp
            else:
                k = norm * math.sqrt(2) * (-1) ** m
                band[m] = k * zp * a
                band[-m] = k * zp * b
        out += [band[m] for m in range(-l, l + 1)]
    return torch.stack(out, dim=-1)

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
    dt_min, dt_max=None, dt_gamma=0.0, jitter=None, ray_t_min=None, max_samples=None,
):
    """Twin of :func:`pt3d_radnerf.ops.occupancy_march`: steps every ray over its whole
    clipped range (no skipping) and keeps the steps whose midpoint cell is occupied."""
    dt_max = dt_min if dt_max is None else dt_max
    box = torch.as_tensor(aabb, dtype=rays_o.dtype, device=rays_o.device).reshape(-1)
    lo, hi, _ = cascade_boxes(box, cascades, resolution)
    outer = torch.cat([lo[-1], hi[-1]])
    near, far, hit = near_far_from_aabb(rays_o, rays_d, outer, t_min)
    far = torch.clamp(far, max=t_max)
    if ray_t_min is not None:
        near = torch.maximum(near, ray_t_min)
        hit = hit & ~torch.isnan(ray_t_min)
    d = rays_d
    norm = torch.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2])

    def step(t, n):  # metric step at depth t (units of |d|) on rays of length n
        return torch.clamp(t * n * dt_gamma, dt_min, dt_max)

    # The lattice lives in lengths units (t_{k+1} = t_k + dt / |d|), as in the kernel.
    t = near + (0.0 if jitter is None else jitter * step(near, norm) / norm)
    bits = ((bitfield[:, None].long() >> torch.arange(8, device=bitfield.device)) & 1).bool()
    bits = bits.reshape(-1)
    limit = float("inf") if max_samples is None else max_samples
    count = torch.zeros_like(near, dtype=torch.long)
    active = hit & (far > near) & (t < far) & (count < limit)
    rays, starts, ends = [], [], []
    while bool(active.any()):
        idx = active.nonzero()[:, 0]
        ti, norm_i = t[idx], norm[idx]
        dt = step(ti, norm_i)
        t_next = ti + dt / norm_i
        stuck = ~(t_next > ti)  # dt below t's precision: the kernel stops such rays
        if bool(stuck.any()):
            active[idx[stuck]] = False
            idx, ti, dt, t_next = idx[~stuck], ti[~stuck], dt[~stuck], t_next[~stuck]
        te = torch.minimum(t_next, far[idx])
        mid = (ti + te) * 0.5
        x = rays_o[idx] + mid[:, None] * d[idx]
        keep = bits[occupancy_cell_index(x, dt, box, cascades, resolution)]
        rays.append(idx[keep])
        starts.append(ti[keep])
        ends.append(te[keep])
        count[idx[keep]] += 1
        t[idx] = t_next
        active = active & (t < far) & (count < limit)
    if rays:
        ray_idx = torch.cat(rays)
        order = torch.sort(ray_idx, stable=True).indices  # per step -> per ray, t stays sorted
        ray_idx, t0, t1 = ray_idx[order], torch.cat(starts)[order], torch.cat(ends)[order]
    else:
        ray_idx = torch.zeros(0, dtype=torch.long, device=rays_o.device)
        t0 = t1 = rays_o.new_zeros(0)
    start = torch.cumsum(count, 0) - count
    return ray_idx, t0, t1, torch.stack([start, count], -1)
