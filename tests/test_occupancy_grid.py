"""OccupancyGrid: update policy, thresholds, dilation, unseen cells, state handling."""

import math
from types import SimpleNamespace

import pytest
import torch
from pytorch3d.renderer import FoVPerspectiveCameras, look_at_view_transform

from pt3d_radnerf import ops
from pt3d_radnerf.renderer import OccupancyGrid


def _ball(radius=0.5, sigma=50.0):
    return lambda x: (x.norm(dim=-1) < radius).float() * sigma


def _dense_coords(res):
    """(res^3, 3) cell coordinates in morton order."""
    return ops.morton3d_invert(torch.arange(res**3, dtype=torch.int32)).long()


def test_fresh_grid_and_state_dict():
    g = OccupancyGrid(aabb=[-1, -0.5, -1, 1, 0.5, 1], resolution=16, cascades=2)
    assert g.occupancy_fraction == 1.0
    assert g.density.shape == (2, 16**3) and g.bitfield.shape == (2 * 16**3 // 8,)
    assert math.isclose(g.step_size, 2 * math.sqrt(3) / 16)
    g.update(_ball(), step=0)
    h = OccupancyGrid(aabb=[-1, -0.5, -1, 1, 0.5, 1], resolution=16, cascades=2)
    h.load_state_dict(g.state_dict())
    assert torch.equal(h.bitfield, g.bitfield) and torch.equal(h.density, g.density)
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
    # Values are optical thicknesses sigma * step_size.
    assert math.isclose(float(g.density.max()), 50.0 * g.step_size, rel_tol=1e-6)


def test_decay_every_n_and_post_warmup_sampling():
    res = 8
    g = OccupancyGrid(resolution=res, update_every=4, warmup_steps=8, threshold=10.0)
    g.update(lambda x: torch.full_like(x[:, 0], 2.0), step=0)
    before = g.density.clone()
    assert not g.update(lambda x: torch.zeros_like(x[:, 0]), step=3)
    assert torch.equal(g.density, before)
    g.update(lambda x: torch.zeros_like(x[:, 0]), step=4)  # still warm-up: every cell decays
    torch.testing.assert_close(g.density, before * 0.95)
    g.update(lambda x: torch.zeros_like(x[:, 0]), step=8)  # 1/4 random + occupied cells
    changed = g.density != before * 0.95
    # threshold = min(mean, 10) = mean -> all equal cells are not > mean: nothing occupied, so only
    # the random quarter (with repeats) is touched.
    assert 0 < int(changed.sum()) <= res**3 // 4


def test_unseen_cells_never_update():
    g = OccupancyGrid(resolution=8)
    g.density[0, :10] = -1
    g.update(lambda x: torch.full_like(x[:, 0], 5.0), step=0)
    assert bool((g.density[0, :10] == -1).all())
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
    unseen = g.density[0] == -1
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
