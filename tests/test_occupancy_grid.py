"""OccupancyGrid: update policy, sigma units and threshold, density conventions, bounded updates,
dilation, unseen cells, state handling; the layout helpers against the test twin."""

import math
from types import SimpleNamespace

import pytest
import torch
from pytorch3d.renderer import FoVPerspectiveCameras, look_at_view_transform

from pt3d_radnerf import ops
from pt3d_radnerf.ops import grid_layout, reference
from pt3d_radnerf.renderer import OccupancyGrid


def _ball(radius=0.5, sigma=50.0):
    return lambda x: (x.norm(dim=-1) < radius).float() * sigma


def _dense_coords(res):
    """(res^3, 3) cell coordinates in morton order."""
    return ops.morton3d_invert(torch.arange(res**3, dtype=torch.int32)).long()


def test_fresh_grid_and_state_dict():
    g = OccupancyGrid(aabb=[-1, -0.5, -1, 1, 0.5, 1], resolution=16, cascades=2)
    assert g.occupancy_fraction == 1.0 and bool(torch.isnan(g.sigma).all())  # never evaluated
    assert g.sigma.shape == (2, 16**3) and g.bitfield.shape == (2 * 16**3 // 8,)
    assert math.isclose(g.step_size, 2 * math.sqrt(3) / 16)
    g.update(_ball(), step=0)
    h = OccupancyGrid(aabb=[-1, -0.5, -1, 1, 0.5, 1], resolution=16, cascades=2)
    h.load_state_dict(g.state_dict())
    assert torch.equal(h.bitfield, g.bitfield) and torch.equal(h.sigma, g.sigma)
    with pytest.raises(ValueError, match="resolution"):
        OccupancyGrid(resolution=24)
    with pytest.raises(ValueError, match="aabb"):
        OccupancyGrid(aabb=[0, 0, 0, 1, 0, 1])


def test_warmup_update_finds_the_ball():
    res = 16
    g = OccupancyGrid(resolution=res)
    assert g.update(_ball(), step=0)
    occ = g.occupied()[0]
    # Independent check from cell geometry: cells entirely inside the ball must be occupied,
    # cells entirely outside must not be.
    cs = 2.0 / res
    lo = -1 + _dense_coords(res).float() * cs
    corners = torch.stack([lo + torch.tensor([i, j, k]) * cs for i in (0, 1) for j in (0, 1) for k in (0, 1)], 1)
    r = corners.norm(dim=-1)
    inside, outside = (r.amax(1) < 0.5), (r.amin(1) > 0.5)
    assert bool(occ[inside].all()) and not bool(occ[outside].any())
    ball = 4 / 3 * math.pi * 0.5**3 / 8
    assert abs(g.occupancy_fraction - ball) < 0.05
    # Values are densities sigma (not sigma * step).
    assert float(g.sigma.max()) == 50.0 and float(g.sigma.min()) == 0.0


def test_decay_every_n_and_post_warmup_sampling():
    res = 8
    # decay 0.5: decayed values stay exact, so "all equal, none above the mean" holds exactly.
    g = OccupancyGrid(resolution=res, update_every=4, warmup_steps=8, threshold=10.0, decay=0.5)
    g.update(lambda x: torch.full_like(x[:, 0], 2.0), step=0)
    before = g.sigma.clone()
    assert bool((before == 2.0).all())
    assert not g.update(lambda x: torch.zeros_like(x[:, 0]), step=3)
    assert torch.equal(g.sigma, before)
    g.update(lambda x: torch.zeros_like(x[:, 0]), step=4)  # still warm-up: every cell decays
    torch.testing.assert_close(g.sigma, before * 0.5)
    g.update(lambda x: torch.zeros_like(x[:, 0]), step=8)  # 1/4 random + occupied cells
    changed = g.sigma != before * 0.5
    # threshold = min(mean, 10) = mean -> all equal cells are not > mean: nothing occupied, so only
    # the random quarter (with repeats) is touched.
    assert 0 < int(changed.sum()) <= res**3 // 4


def test_unseen_cells_never_update():
    g = OccupancyGrid(resolution=8)
    g.sigma[0, :10] = -1
    g.update(lambda x: torch.full_like(x[:, 0], 5.0), step=0)
    assert bool((g.sigma[0, :10] == -1).all())
    assert not bool(g.occupied()[0, :10].any()) and bool(g.occupied()[0, 10:].all())


def test_dilation_six_neighbours():
    res = 8
    coords = _dense_coords(res)
    bits = torch.zeros(1, res**3, dtype=torch.bool)
    centre = torch.tensor([3, 4, 5])
    bits[0, (coords == centre).all(-1)] = True
    out = ops.dilate_occupancy(bits, res, 1)[0]
    want = (coords - centre).abs().sum(-1) <= 1
    assert torch.equal(out, want) and int(out.sum()) == 7
    out2 = ops.dilate_occupancy(bits, res, 2)[0]
    assert torch.equal(out2, (coords - centre).abs().sum(-1) <= 2)


def test_mark_unseen_matches_frustum():
    res = 16
    g = OccupancyGrid(resolution=res)
    R, T = look_at_view_transform(dist=3.0, elev=0.0, azim=0.0)
    fov = 30.0
    cams = FoVPerspectiveCameras(R=R, T=T, fov=fov)
    n = g.mark_unseen(cams, image_size=(32, 32))
    centres = g.cell_points(torch.arange(res**3), jitter=False)
    view = centres @ R[0] + T[0]  # PyTorch3D row-vector convention
    tan = math.tan(math.radians(fov / 2))
    # PyTorch3D NDC: +X left; symmetric test, so the sign does not matter.
    vis = (view[:, 2] > 0) & ((view[:, 0] / view[:, 2]).abs() < tan) & ((view[:, 1] / view[:, 2]).abs() < tan)
    margin = ((view[:, :2] / view[:, 2:]).abs() - tan).abs().amin(-1) > 1e-3  # skip pixel-edge cases
    unseen = g.sigma[0] == -1
    assert torch.equal(unseen[margin], ~vis[margin])
    assert n == int(unseen.sum()) and 0 < n < res**3
    assert not bool(g.occupied()[0][unseen].any())
    with pytest.raises(ValueError, match="cameras are on"):
        g.mark_unseen(SimpleNamespace(device=torch.device("cuda:0")), (4, 4))


def test_is_occupied():
    g = OccupancyGrid(aabb=[-1, -0.5, -1, 1, 0.5, 1], resolution=8, cascades=2)
    g.update(_ball(0.3), step=0)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.4, 0.9], [5.0, 0.0, 0.0]])
    assert g.is_occupied(pts).tolist() == [True, False, False]


def _ball_and_floor(x):
    """sigma 20 in a ball of radius 0.3, 3 everywhere else."""
    return torch.where(x.norm(dim=-1) < 0.3, 20.0, 3.0)


@pytest.mark.parametrize("step_size", [None, 0.2])
def test_threshold_is_in_sigma_units(step_size):
    """occupied where sigma > min(mean sigma, threshold), whatever the step size."""
    res = 16
    low = OccupancyGrid(resolution=res, step_size=step_size, threshold=2.0)
    high = OccupancyGrid(resolution=res, step_size=step_size, threshold=10.0)
    for g in (low, high):
        g.update(_ball_and_floor, step=0)
    assert low.occupancy_fraction == 1.0  # 3 > min(mean, 2) = 2 everywhere
    mean = float(high.sigma.mean())
    assert 3.0 < mean < 10.0
    assert torch.equal(high.occupied(), high.sigma > mean)  # the mean decides, not 10
    assert 0 < high.occupancy_fraction < 0.05
    default = OccupancyGrid(resolution=res, step_size=step_size)
    assert math.isclose(default.threshold, 0.01 / default.step_size)


def test_alpha_density_mode_matches_sigma():
    res = 16
    by_sigma, by_alpha = OccupancyGrid(resolution=res), OccupancyGrid(resolution=res)
    torch.manual_seed(0)
    by_sigma.update(_ball_and_floor, step=0)
    step = by_alpha.step_size
    torch.manual_seed(0)  # same jittered points
    by_alpha.update(lambda x: 1.0 - torch.exp(-_ball_and_floor(x) * step), step=0, density_mode="alpha")
    torch.testing.assert_close(by_alpha.sigma, by_sigma.sigma, rtol=1e-4, atol=1e-4)
    assert torch.equal(by_alpha.bitfield, by_sigma.bitfield)


class _FieldLike(torch.nn.Module):
    """A PyTorch3D implicit function: forward takes a ray bundle."""

    def forward(self, ray_bundle, **kwargs):
        return ray_bundle.origins


def test_update_errors_say_what_they_got():
    g = OccupancyGrid(resolution=8)
    cases = [
        (lambda x: x, {}, ValueError, r"\(512,\) or \(512, 1\) sigma values for 512 points, got shape \(512, 3\)"),
        (lambda x: -torch.ones(len(x)), {}, ValueError, "negative sigma values"),
        (lambda x: torch.full((len(x),), float("nan")), {}, ValueError, "NaN"),
        (lambda x: torch.full((len(x),), 3.0), {"density_mode": "alpha"}, ValueError,
         r"\[0, 1\].*density_mode='sigma'"),
        (lambda x: [1.0] * len(x), {}, TypeError, "must return a tensor"),
        (_FieldLike(), {}, TypeError, "field.density"),
        (_ball(), {"density_mode": "opacity"}, ValueError, "density_mode"),
        ("not callable", {}, TypeError, "callable"),
    ]
    for fn, kw, err, match in cases:
        with pytest.raises(err, match=match):
            g.update(fn, step=0, **kw)
    assert g.occupancy_fraction == 1.0 and bool(torch.isnan(g.sigma).all())  # nothing written


def test_configuration_is_read_only():
    g = OccupancyGrid(resolution=8, threshold=10.0, decay=0.8, update_every=4, warmup_steps=32, cells_per_update=64)
    assert (g.threshold, g.decay, g.update_every, g.warmup_steps, g.cells_per_update) == (10.0, 0.8, 4, 32, 64)
    for name in ("threshold", "decay", "update_every", "warmup_steps", "resolution", "step_size", "cells_per_update"):
        with pytest.raises(AttributeError):
            setattr(g, name, 1)
    for kw, match in [(dict(decay=1.5), "decay"), (dict(threshold=-1.0), "threshold"),
                      (dict(cells_per_update=0), "cells_per_update"), (dict(step_size=-0.1), "step_size"),
                      (dict(update_every=0), "update_every"), (dict(dilation=-1), "dilation")]:
        with pytest.raises(ValueError, match=match):
            OccupancyGrid(resolution=8, **kw)


def test_cells_per_update_bounds_the_work_and_the_warmup_sweep_covers_every_cell():
    res, budget = 8, 64
    g = OccupancyGrid(resolution=res, cells_per_update=budget, warmup_steps=8, update_every=1)
    seen = []

    def per_cell(x):  # constant on each cell: any two updates of a cell agree
        idx, _ = grid_layout.point_cells(x, g.aabb, 1, res)
        return 50.0 * (idx % 3 == 0).float()

    def counting(x):
        seen.append(x.shape[0])
        return per_cell(x)

    for step in range(res**3 // budget):
        g.update(counting, step=step, chunk=40)  # chunks of 40: two calls per update
        unknown = torch.isnan(g.sigma)
        # A fixed scattered order: each update evaluates `budget` new cells, never one twice.
        assert int(unknown.sum()) == res**3 - (step + 1) * budget
        assert bool(g.occupied()[unknown].all())  # not evaluated yet: still occupied
    assert seen == [40, 24] * (res**3 // budget)
    full = OccupancyGrid(resolution=res)
    full.update(per_cell, step=0)
    assert torch.equal(g.occupied(), full.occupied())  # same cells end up occupied
    seen.clear()
    g.update(counting, step=100)  # after warm-up: half random, half occupied cells
    assert sum(seen) == budget


def test_layout_helpers_match_the_twin():
    torch.manual_seed(0)
    aabb = torch.tensor([-1.0, -0.5, -1.0, 1.0, 0.5, 1.0], dtype=torch.float64)
    for cascades, res in [(1, 16), (3, 8)]:
        lo, hi, cs = grid_layout.cascade_boxes(aabb, cascades, res)
        for got, want in zip((lo, hi, cs), reference.cascade_boxes(aabb, cascades, res)):
            assert torch.equal(got, want)
        pts = (torch.rand(4000, 3, dtype=torch.float64) * 2 - 1) * hi[-1] * 1.1
        idx, inside = grid_layout.point_cells(pts, aabb, cascades, res)
        want = reference.occupancy_cell_index(pts, torch.zeros(4000, dtype=torch.float64), aabb, cascades, res)
        assert torch.equal(idx[inside], want[inside])
        assert torch.equal(inside, ((pts >= lo[-1]) & (pts <= hi[-1])).all(-1))
        # Cell centres map back to their own cell, at the twin's geometry.
        cells = torch.randint(0, cascades * res**3, (500,))
        centres = grid_layout.cell_points(cells, aabb, cascades, res, torch.full((500, 3), 0.5))
        c = cells // res**3
        xyz = reference.morton3d_invert((cells % res**3).int()).double()
        torch.testing.assert_close(centres, lo[c] + (xyz + 0.5) * cs[c], rtol=0, atol=1e-12)
        fine = c == 0  # (a coarser cell's centre may lie in a finer cascade, which then wins)
        assert torch.equal(grid_layout.point_cells(centres[fine], aabb, cascades, res)[0], cells[fine])
    bits = torch.rand(3 * 64) > 0.5
    packed = reference.packbits(bits.float(), 0.5)
    assert torch.equal(grid_layout.unpack_bits(packed), bits)
    some = torch.randint(0, bits.numel(), (50,))
    assert torch.equal(grid_layout.read_bits(packed, some), bits[some])


def test_production_never_imports_the_twin():
    import ast
    import pathlib

    root = pathlib.Path(grid_layout.__file__).resolve().parents[1]
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else [])
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if any("reference" in n.split(".") for n in names) or "reference" in module.split("."):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_raysampler_drives_updates_during_training():
    from pytorch3d.renderer import FoVPerspectiveCameras

    from pt3d_radnerf.renderer import OccupancyGridRaysampler

    grid = OccupancyGrid(resolution=8, update_every=2, warmup_steps=100)
    step = grid.step_size
    calls = []

    def alpha_fn(x):  # per-step opacity of the ball, as a PyTorch3D-tutorial field reports it
        calls.append(x.shape[0])
        return 1.0 - torch.exp(-_ball(0.5, 5.0)(x) * step)

    sampler = OccupancyGridRaysampler(image_width=4, image_height=4, occupancy_grid=grid, update_fn=alpha_fn,
                                      update_density_mode="alpha")
    cams = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]]))
    sampler.train()
    sampler(cams)  # step 0: a full warm-up update
    assert calls == [8**3] and int(sampler.update_step) == 1 and not bool(torch.isnan(grid.sigma).any())
    torch.testing.assert_close(grid.sigma.max(), torch.tensor(5.0), rtol=1e-4, atol=0)
    sampler(cams)  # step 1: not an update step
    sampler(cams)  # step 2: updates
    assert len(calls) == 2 and int(sampler.update_step) == 3
    with torch.no_grad():
        sampler(cams)  # inference: no update, no step
    sampler.eval()
    sampler(cams)
    assert len(calls) == 2 and int(sampler.update_step) == 3
    assert "update_step" in sampler.state_dict()
    with pytest.raises(ValueError, match="update_fn needs occupancy_grid"):
        OccupancyGridRaysampler(image_width=4, image_height=4, update_fn=alpha_fn)


def test_aabb_is_checked_once_and_kept_on_the_host():
    for bad in [(0.0, 0.0, 0.0, 1.0, float("nan"), 1.0), (0.0, 0.0, 0.0, float("inf"), 1.0, 1.0), (0.0, 1.0)]:
        with pytest.raises(ValueError, match="aabb must be 6 finite numbers"):
            OccupancyGrid(aabb=bad, resolution=8)
    grid = OccupancyGrid(aabb=(-1.0, -0.5, -1.0, 1.0, 0.5, 1.0), resolution=8)
    assert grid.box == (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
    other = OccupancyGrid(aabb=(-2.0, -0.5, -1.0, 1.0, 0.5, 1.0), resolution=8)
    with pytest.raises(ValueError, match="saved for aabb .* build the grid with the same aabb"):
        grid.load_state_dict(other.state_dict())
    grid.load_state_dict(OccupancyGrid(aabb=grid.box, resolution=8).state_dict())


def _full_recompute(g):
    """Independent reference of the bitfield: every cell against min(mean of the seen cells,
    threshold), NaN (never evaluated) occupied, -1 (unseen) empty, with the test twin's packbits."""
    sigma = g.sigma.reshape(-1)
    seen = sigma[sigma >= 0].double()
    thre = min(float(seen.mean()), g.threshold) if seen.numel() else g.threshold
    return reference.packbits(torch.nan_to_num(sigma, nan=float("inf")), thre)


@pytest.mark.parametrize("threshold", [0.05, 1e4])  # mean above it (fixed) / below it (moves)
def test_incremental_update_equals_full_recompute_bit_for_bit(threshold, monkeypatch):
    torch.manual_seed(0)
    g = OccupancyGrid(resolution=16, cascades=2, cells_per_update=300, warmup_steps=6, update_every=1,
                      threshold=threshold, decay=0.9)
    g.sigma[1, :50] = -1.0  # unseen cells: never updated, never occupied, not in the mean
    packs = []
    full_pack = OccupancyGrid._pack
    monkeypatch.setattr(OccupancyGrid, "_pack", lambda self, thre: packs.append(thre) or full_pack(self, thre))

    def field(step):  # a ball of varying radius and density over a faint, noisy floor
        return lambda x: ((x.norm(dim=-1) < 0.3 + 0.05 * (step % 5)).float() * (20.0 + step)
                          + 0.2 * torch.rand(x.shape[0]))

    for step in range(20):  # partial warm-up sweeps (NaN cells left), then occupied + random cells
        if step == 12:
            g.sigma[0, 100:140] = 7.0  # an outside write: the next update must resynchronise
        g.update(field(step), step=step)
        assert torch.equal(g.bitfield, _full_recompute(g)), step
    if threshold == 0.05:  # the mean stays above the threshold: only the touched bytes were repacked
        assert len(packs) <= 3
    else:  # the mean moves with every update: each one repacks everything, as it must
        assert len(packs) >= 19


@pytest.mark.parametrize("cascades", [1, 2])
def test_occupied_cells_are_drawn_as_ranks_of_the_occupied_list(cascades):
    """The post-warm-up draw picks the r-th occupied cell for uniform ranks r: the same cells as
    listing every occupied cell (unpack + nonzero) and indexing it with the same random ranks."""
    res, budget = 16, 512
    g = OccupancyGrid(resolution=res, cascades=cascades, cells_per_update=budget, warmup_steps=0)
    for fraction in (0.0, 0.002, 0.3, 1.0):
        occupied = torch.rand(cascades, res**3) < fraction
        g.set_occupancy(occupied)
        listed = occupied.reshape(-1).nonzero()[:, 0]
        torch.manual_seed(3)
        got = g._cells_to_update(step=5)
        torch.manual_seed(3)
        n_occ = min(budget // 2, listed.numel())
        picked = listed[torch.randint(0, max(listed.numel(), 1), (n_occ,))]
        want = torch.cat([torch.randint(0, g.n_cells, (budget - n_occ,)), picked])
        assert torch.equal(got, want), fraction


def test_update_in_inference_mode_equals_full_recompute():
    """Inference-mode buffers keep no write counters: updates then re-threshold in full."""
    torch.manual_seed(1)
    with torch.inference_mode():
        g = OccupancyGrid(resolution=8, cells_per_update=64, warmup_steps=2, update_every=1, threshold=0.05)
        for step in range(6):
            g.update(lambda x: (x.norm(dim=-1) < 0.4).float() * 30.0 + 0.1 * torch.rand(x.shape[0]), step=step)
            assert torch.equal(g.bitfield, _full_recompute(g)), step


def test_cells_drawn_twice_keep_the_max_of_their_evaluations(two_threads):
    """Random and occupied draws overlap: a cell evaluated twice in one update keeps the larger
    value whatever the order (an indexed write would keep whichever copy lands last, a race
    between threads on large updates)."""
    from pt3d_radnerf import ops

    grid = torch.full((1, 8), 0.5)
    grid[0, 3] = -1.0  # unseen: stays
    idx = torch.tensor([1, 1, 5, 3, 5, 1])
    vals = torch.tensor([0.2, 3.0, 1.0, 9.0, 2.0, 0.7])
    for perm in (torch.arange(6), torch.tensor([5, 4, 3, 2, 1, 0]), torch.tensor([1, 0, 4, 2, 5, 3])):
        out = ops.decayed_max_update(grid, idx[perm], vals[perm], 0.5)
        assert out[0].tolist() == [0.5, 3.0, 0.5, -1.0, 0.5, 2.0, 0.5, 0.5]
    big_idx = torch.randint(0, 64, (1 << 17,))
    big_vals = torch.rand(1 << 17)
    want = torch.zeros(64).scatter_reduce(0, big_idx, big_vals, "amax", include_self=False)
    got = ops.decayed_max_update(torch.zeros(1, 64), big_idx, big_vals, 0.9)[0]
    torch.testing.assert_close(got, torch.maximum(want, torch.zeros(64)), rtol=0, atol=0)
