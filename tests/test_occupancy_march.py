"""occupancy_march kernel vs the brute-force pure-PyTorch marcher (exact sample sets)."""

import math

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda

AABB = [-1.0, -0.5, -1.0, 1.0, 0.5, 1.0]  # RAD-NeRF's non-cubic head box


def _rays(n, dtype=torch.float64, spread=0.6):
    """Rays from a sphere of radius 3 aimed near the centre; some miss, lengths vary."""
    o = torch.nn.functional.normalize(torch.randn(n, 3, dtype=dtype), dim=-1) * 3.0
    target = (torch.rand(n, 3, dtype=dtype) - 0.5) * 2 * spread
    d = (target - o) * (0.5 + torch.rand(n, 1, dtype=dtype))  # not unit length
    return o.contiguous(), d.contiguous()


def _bitfield(cascades, res, p=0.3):
    occ = torch.rand(cascades * res**3) < p
    return ops.packbits(occ.float(), 0.5)


def _blob_bitfield(cascades, res, balls=6, noise=0.001):
    """Spatially coherent occupancy (a few balls per cascade plus sparse noise), so the grid has
    large empty regions next to occupied ones: the case empty-space skipping is built for."""
    r = (torch.arange(res, dtype=torch.float64) + 0.5) / res
    centres = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1)
    dense = torch.rand(cascades, res, res, res) < noise
    for c in range(cascades):
        for _ in range(balls):
            ctr = torch.rand(3, dtype=torch.float64) * 0.8 + 0.1
            dense[c] |= (centres - ctr).norm(dim=-1) < 0.05 + 0.15 * torch.rand(()) + 0.5 / res
    occ = torch.zeros(cascades, res**3)
    occ[:, ops.dense_to_morton_index(res)] = dense.reshape(cascades, -1).float()
    return ops.packbits(occ.reshape(-1), 0.5)


def _march_without_skipping(monkeypatch, *args, **kwargs):
    """The kernel with empty-space skipping switched off: every lattice step is looked up."""
    with monkeypatch.context() as m:
        m.setenv("PT3D_RADNERF_MARCH_NO_SKIP", "1")
        return ops.occupancy_march(*args, **kwargs)


def _assert_same(got, want, atol):
    ri, t0, t1, info = got
    ri_w, t0_w, t1_w, info_w = want
    assert torch.equal(info, info_w)
    assert torch.equal(ri, ri_w)
    torch.testing.assert_close(t0, t0_w, rtol=0, atol=atol)
    torch.testing.assert_close(t1, t1_w, rtol=0, atol=atol)


@pytest.mark.parametrize(
    "cascades,dt_gamma,jitter,max_samples",
    [(1, 0.0, False, None), (1, 0.0, True, 5), (2, 1 / 64, False, None), (3, 1 / 32, True, None)],
)
def test_matches_bruteforce_twin(cascades, dt_gamma, jitter, max_samples):
    res = 16
    o, d = _rays(400)
    bits = _bitfield(cascades, res)
    kw = dict(
        cascades=cascades, resolution=res, t_min=0.1, dt_min=2 * math.sqrt(3) / 128,
        dt_max=0.5, dt_gamma=dt_gamma, max_samples=max_samples,
        jitter=torch.rand(400, dtype=o.dtype) if jitter else None,
    )
    got = ops.occupancy_march(o, d, AABB, bits, **kw)
    want = reference.occupancy_march(o, d, torch.tensor(AABB, dtype=o.dtype), bits, **kw)
    assert got[1].numel() > 1000  # the scene really produces samples
    _assert_same(got, want, atol=1e-9)
    if max_samples is not None:
        assert int(got[3][:, 1].max()) == max_samples


def _march_in_chunks(o, d, bits, steps, **kw):
    """Marches every ray a few samples at a time, each call resuming at the last t_end (as the
    compacted renderer does); returns the chunks concatenated per ray, laid out like one call."""
    n = o.shape[0]
    t_next = torch.full((n,), -math.inf, dtype=o.dtype)
    alive = torch.arange(n)
    rays, t0s, t1s = [], [], []
    for it in range(10_000):
        if alive.numel() == 0:
            break
        k = steps[it % len(steps)]
        ri, t0, t1, info = ops.occupancy_march(
            o[alive], d[alive], AABB, bits, ray_t_min=t_next[alive], max_samples=k, **kw
        )
        rays.append(alive[ri]), t0s.append(t0), t1s.append(t1)
        start, count = info[:, 0], info[:, 1]
        got = count > 0
        t_next[alive[got]] = t1[start[got] + count[got] - 1]
        alive = alive[count == k]  # fewer than k samples: the ray is exhausted
    ri = torch.cat(rays)
    order = torch.sort(ri, stable=True).indices  # chunks in call order -> per ray, t sorted
    counts = torch.bincount(ri, minlength=n)
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    return ri[order], torch.cat(t0s)[order], torch.cat(t1s)[order], info, it


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "cascades,dt_gamma,steps",
    [(1, 0.0, [1]), (1, 0.0, [3, 1, 8]), (2, 1 / 64, [2, 5]), (3, 1 / 32, [1, 8])],
)
def test_resumed_march_equals_single_pass(cascades, dt_gamma, steps, dtype):
    """The march is memoryless in t: resuming at each ray's last t_end reproduces the single
    pass bit for bit, with cell skipping, multiple cascades and t-dependent steps."""
    res = 16
    o, d = _rays(300, dtype=dtype)
    bits = _bitfield(cascades, res, p=0.2)
    kw = dict(cascades=cascades, resolution=res, t_min=0.1, dt_min=2 * math.sqrt(3) / 128,
              dt_max=0.5, dt_gamma=dt_gamma)
    single = ops.occupancy_march(o, d, AABB, bits, **kw)
    *chunked, calls = _march_in_chunks(o, d, bits, steps, **kw)
    assert single[1].numel() > 1000 and calls > 3
    assert torch.equal(chunked[3], single[3]) and torch.equal(chunked[0], single[0])
    assert torch.equal(chunked[1], single[1]) and torch.equal(chunked[2], single[2])


def test_ray_t_min_matches_twin_and_bounds_the_start():
    res, cascades = 16, 2
    o, d = _rays(400)
    bits = _bitfield(cascades, res)
    near, far, hit = reference.near_far_from_aabb(o, d, torch.tensor([-2.0, -1.0, -2.0, 2.0, 1.0, 2.0], dtype=o.dtype))
    start = near + (far - near) * torch.rand_like(near)  # somewhere inside the outer box
    start[:10] = -math.inf  # no bound
    start[10:20] = math.inf  # finished
    start[20:30] = math.nan  # finished
    kw = dict(cascades=cascades, resolution=res, t_min=0.1, dt_min=0.03, dt_max=0.2, dt_gamma=1 / 64)
    got = ops.occupancy_march(o, d, AABB, bits, ray_t_min=start, **kw)
    want = reference.occupancy_march(o, d, torch.tensor(AABB, dtype=o.dtype), bits, ray_t_min=start, **kw)
    _assert_same(got, want, atol=1e-9)
    ri, t0, _, info = got
    assert t0.numel() > 1000 and int(info[10:30, 1].sum()) == 0
    assert bool((t0 >= torch.clamp(start[ri], min=0.1)).all())
    free = ops.occupancy_march(o[:10], d[:10], AABB, bits, **kw)
    assert torch.equal(free[1], t0[: int(info[:10, 1].sum())])
    # A ray restarted inside occupied space gets its first sample exactly at the start.
    first = t0[info[:, 0][info[:, 1] > 0]]
    assert bool((first == start[info[:, 1] > 0]).any())


def test_samples_inside_box_and_occupied_cells():
    res, cascades = 16, 2
    o, d = _rays(300)
    bits = _bitfield(cascades, res, p=0.2)
    dt = 0.05
    ri, t0, t1, info = ops.occupancy_march(
        o, d, AABB, bits, cascades=cascades, resolution=res, dt_min=dt
    )
    mid = 0.5 * (t0 + t1)
    pts = o[ri] + mid[:, None] * d[ri]
    lo, hi, _ = reference.cascade_boxes(torch.tensor(AABB, dtype=o.dtype), cascades, res)
    assert bool(((pts >= lo[-1] - 1e-9) & (pts <= hi[-1] + 1e-9)).all())
    occ = ((bits[:, None].long() >> torch.arange(8)) & 1).bool().reshape(-1)
    cell = reference.occupancy_cell_index(pts, torch.full_like(mid, dt), torch.tensor(AABB, dtype=o.dtype), cascades, res)
    assert bool(occ[cell].all())
    # Layout: per-ray contiguous, sorted, (start, count) consistent with ray_indices.
    assert torch.equal(ri, torch.repeat_interleave(info[:, 1]))
    assert torch.equal(info[:, 0], torch.cumsum(info[:, 1], 0) - info[:, 1])
    same_ray = ri[1:] == ri[:-1]
    assert bool((t0[1:][same_ray] >= t1[:-1][same_ray] - 1e-12).all())


def test_no_ray_dropped_with_many_samples():
    """All-occupied grid, tiny step: every hit ray's samples tile [near, far] exactly."""
    res = 8
    o, d = _rays(2000)
    bits = torch.full((res**3 // 8,), 255, dtype=torch.uint8)
    dt = 1e-3
    ri, t0, t1, info = ops.occupancy_march(o, d, AABB, bits, cascades=1, resolution=res, dt_min=dt)
    near, far, hit = reference.near_far_from_aabb(o, d, torch.tensor(AABB, dtype=o.dtype))
    assert t0.numel() > 1_000_000
    assert torch.equal(info[:, 1] > 0, hit)
    covered = torch.zeros_like(near).index_add_(0, ri, t1 - t0)
    torch.testing.assert_close(covered, torch.where(hit, far - near, torch.zeros_like(near)), atol=1e-9, rtol=1e-9)
    n_steps = torch.ceil((far - near) * d.norm(dim=-1) / dt - 1e-9)
    assert torch.equal(info[:, 1][hit], n_steps[hit].long())


def test_float32_and_edge_cases():
    res = 16
    o, d = _rays(200, dtype=torch.float32)
    bits = _bitfield(1, res)
    got = ops.occupancy_march(o, d, AABB, bits, cascades=1, resolution=res, dt_min=0.02)
    want = reference.occupancy_march(o, d, torch.tensor(AABB), bits, cascades=1, resolution=res, dt_min=0.02)
    assert (got[3][:, 1] == want[3][:, 1]).float().mean() > 0.97  # float32 rounding at cell faces
    # Empty input, empty grid, NaN rays and rays pointing away give zero samples.
    empty = ops.occupancy_march(o[:0], d[:0], AABB, bits, cascades=1, resolution=res, dt_min=0.02)
    assert empty[0].numel() == 0 and empty[3].shape == (0, 2)
    none = ops.occupancy_march(o, d, AABB, torch.zeros_like(bits), cascades=1, resolution=res, dt_min=0.02)
    assert none[1].numel() == 0 and int(none[3][:, 1].sum()) == 0
    o2 = o.clone()
    o2[0, 1] = float("nan")
    out = ops.occupancy_march(o2, -d, AABB, bits, cascades=1, resolution=res, dt_min=0.02)
    assert int(out[3][:, 1].sum()) == 0
    assert ops.occupancy_march(o, d, AABB, bits, cascades=1, resolution=res, dt_min=0.02, max_samples=0)[1].numel() == 0


def test_bad_input():
    o, d = _rays(4)
    bits = _bitfield(1, 16)
    kw = dict(cascades=1, resolution=16, dt_min=0.02)
    with pytest.raises(ValueError, match="resolution must be a power of two"):
        ops.occupancy_march(o, d, AABB, bits, cascades=1, resolution=12, dt_min=0.02)
    with pytest.raises(ValueError, match="bitfield must have shape"):
        ops.occupancy_march(o, d, AABB, bits[:-1], **kw)
    with pytest.raises(ValueError, match="dt_min"):
        ops.occupancy_march(o, d, AABB, bits, cascades=1, resolution=16, dt_min=0.0)
    with pytest.raises(ValueError, match="rays_d must have shape"):
        ops.occupancy_march(o, d[:3], AABB, bits, **kw)
    with pytest.raises(TypeError, match="rays_d"):
        ops.occupancy_march(o, d.float(), AABB, bits, **kw)
    with pytest.raises(TypeError, match="bitfield"):
        ops.occupancy_march(o, d, AABB, bits.float(), **kw)
    with pytest.raises(ValueError, match="jitter must have shape"):
        ops.occupancy_march(o, d, AABB, bits, jitter=torch.zeros(3, dtype=o.dtype), **kw)
    with pytest.raises(ValueError, match="max_samples"):
        ops.occupancy_march(o, d, AABB, bits, max_samples=-2, **kw)
    with pytest.raises(ValueError, match=r"ray_t_min must have shape \(N,\)"):
        ops.occupancy_march(o, d, AABB, bits, ray_t_min=torch.zeros(4, 1, dtype=o.dtype), **kw)
    with pytest.raises(TypeError, match="ray_t_min must have the dtype of rays_o"):
        ops.occupancy_march(o, d, AABB, bits, ray_t_min=torch.zeros(4), **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "cascades,res,dt_gamma,dt_max,noise",
    [
        (1, 128, 0.0, None, 0.0),  # RAD-NeRF: one cascade, fixed step, summary levels up to 64^3
        (1, 32, 0.0, None, 0.01),
        (1, 8, 0.0, None, 0.0),  # too small for the block summary: direct bitfield reads
        (1, 4, 0.0, None, 0.0),
        (3, 32, 0.0, None, 0.001),  # the cascade rule (finer box entry) bounds every skip
        (3, 64, 1 / 64, 0.5, 0.001),  # growing steps: stepwise skip, coarser cascades take over
        (2, 32, 1 / 64, "dt_min", 0.0),  # dt_gamma > 0 with a constant step: closed-form jumps
    ],
)
def test_skipping_is_bit_identical_to_every_step_lookup(monkeypatch, dtype, cascades, res, dt_gamma, dt_max, noise):
    n = 1500
    o, d = _rays(n, dtype=dtype, spread=1.0)
    o[:100] *= 0.1  # origins inside the box
    d[100:200, 1] = 0.0  # rays parallel to a face (a zero direction component)
    bits = _blob_bitfield(cascades, res, noise=noise)
    dt = 2 * math.sqrt(3) / res
    kw = dict(cascades=cascades, resolution=res, t_min=0.05, dt_min=dt,
              dt_max=dt if dt_max == "dt_min" else dt_max, dt_gamma=dt_gamma)
    jitter = torch.rand(n, dtype=dtype)
    skip = ops.occupancy_march(o, d, AABB, bits, jitter=jitter, **kw)
    every = _march_without_skipping(monkeypatch, o, d, AABB, bits, jitter=jitter, **kw)
    assert skip[1].numel() > 300 and int((skip[3][:, 1] == 0).sum()) > 100
    for got, want in zip(skip, every):
        assert torch.equal(got, want)
    # Resumed mid-ray (the compacted renderer's ray_t_min) with a sample cap.
    start = skip[2][skip[3][:, 0].clamp(max=skip[2].numel() - 1)]  # each ray's first t_end
    start = torch.where(skip[3][:, 1] > 0, start, torch.full_like(start, -math.inf))
    kw.update(ray_t_min=start, max_samples=4)
    skip = ops.occupancy_march(o, d, AABB, bits, **kw)
    every = _march_without_skipping(monkeypatch, o, d, AABB, bits, **kw)
    assert skip[1].numel() > 100
    for got, want in zip(skip, every):
        assert torch.equal(got, want)


def test_skipping_matches_bruteforce_twin_on_sparse_grid():
    o, d = _rays(300)
    bits = _blob_bitfield(2, 64)
    kw = dict(cascades=2, resolution=64, t_min=0.1, dt_min=2 * math.sqrt(3) / 64, dt_max=0.2,
              dt_gamma=1 / 128, jitter=torch.rand(300, dtype=o.dtype))
    got = ops.occupancy_march(o, d, AABB, bits, **kw)
    want = reference.occupancy_march(o, d, torch.tensor(AABB, dtype=o.dtype), bits, **kw)
    assert got[1].numel() > 500
    _assert_same(got, want, atol=1e-9)


@pytest.mark.parametrize("skipping", [True, False])
def test_step_errors(monkeypatch, skipping):
    """Steps below the float precision of t, and marches longer than the documented lattice-step
    limit (2^22 per ray), raise a ValueError naming dt_min instead of returning no samples or
    spinning for minutes (dt_min=1e-9 took 40+ s)."""
    if not skipping:
        monkeypatch.setenv("PT3D_RADNERF_MARCH_NO_SKIP", "1")
    res = 16
    full = torch.full((res**3 // 8,), 255, dtype=torch.uint8)
    o = torch.tensor([[0.0, 0.0, -3.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    kw = dict(cascades=1, resolution=res)
    with pytest.raises(ValueError, match=r"ray 0 spans more than 4194304 lattice steps.*dt_min=1e-09"):
        ops.occupancy_march(o, d, AABB, torch.zeros_like(full), dt_min=1e-9, **kw)
    # float32 at t in [2, 4] (spacing >= 2.4e-7): a step of 1e-7 does not advance t. Ray 0
    # misses the box; the first failing ray is named.
    o32, d32 = o.float().repeat(3, 1), d.float().repeat(3, 1)
    d32[0] = -d32[0]
    with pytest.raises(ValueError, match=r"ray 1 cannot advance.*dt_min=1e-07.*float32 precision"):
        ops.occupancy_march(o32, d32, AABB, full, dt_min=1e-7, **kw)
    # Below the limit the same ray marches: t in [2, 4] at 4e6 steps of 5e-7 (float64).
    ri, t0, t1, info = ops.occupancy_march(o, d, AABB, full, dt_min=5e-7, **kw)
    assert abs(int(info[0, 1]) - 4_000_000) <= 1
    assert float(t0[0]) == 2.0 and float(t1[-1]) == 4.0


@requires_cuda
def test_cuda_matches_cpu():
    o, d = _rays(5000)
    bits = _bitfield(2, 32)
    kw = dict(cascades=2, resolution=32, dt_min=0.01, dt_max=0.2, dt_gamma=1 / 128, t_min=0.1)
    jit = torch.rand(5000, dtype=o.dtype)
    cpu = ops.occupancy_march(o, d, AABB, bits, jitter=jit, **kw)
    gpu = ops.occupancy_march(o.cuda(), d.cuda(), AABB, bits.cuda(), jitter=jit.cuda(), **kw)
    _assert_same(tuple(t.cpu() for t in gpu), cpu, atol=1e-9)
    start = cpu[2][cpu[3][:, 0].clamp(max=cpu[2].numel() - 1)]  # each ray's first t_end
    cpu = ops.occupancy_march(o, d, AABB, bits, ray_t_min=start, max_samples=3, **kw)
    gpu = ops.occupancy_march(o.cuda(), d.cuda(), AABB, bits.cuda(), ray_t_min=start.cuda(), max_samples=3, **kw)
    _assert_same(tuple(t.cpu() for t in gpu), cpu, atol=1e-9)
