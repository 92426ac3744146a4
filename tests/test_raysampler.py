"""OccupancyGridRaysampler against PyTorch3D's raysamplers, the brute-force marcher and renders."""

import math
from types import SimpleNamespace

import pytest
import torch
from pytorch3d.renderer import (
    EmissionAbsorptionRaymarcher,
    FoVOrthographicCameras,
    FoVPerspectiveCameras,
    ImplicitRenderer,
    MonteCarloRaysampler,
    MultinomialRaysampler,
    NDCMultinomialRaysampler,
    OrthographicCameras,
    PerspectiveCameras,
    look_at_view_transform,
    ray_bundle_to_ray_points,
)
from pytorch3d.renderer.implicit.utils import RayBundle
from pytorch3d.transforms import Rotate, Translate, so3_exp_map

from pt3d_radnerf.ops import reference
from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaysampler, PackedRayBundle

W, H = 12, 8


class PerspectiveCameras64(PerspectiveCameras):
    """PerspectiveCameras whose world-to-view transform keeps R/T's dtype: PyTorch3D's builds it
    in float32 (Rotate/Translate default dtype), which rules out float64 checks otherwise."""

    def get_world_to_view_transform(self, **kwargs):
        R, T = kwargs.get("R", self.R), kwargs.get("T", self.T)
        return Rotate(R, dtype=R.dtype, device=R.device).compose(Translate(T, dtype=T.dtype, device=T.device))


def _cameras(kind, batch=2, image_size=(H, W)):
    R, T = look_at_view_transform(dist=[3.0, 3.5][:batch], elev=[10, -20][:batch], azim=[30, 150][:batch])
    if kind == "fov":
        return FoVPerspectiveCameras(R=R, T=T, fov=40.0, aspect_ratio=1.0)
    if kind == "persp_ndc":
        return PerspectiveCameras(R=R, T=T, focal_length=((2.0, 2.5),), principal_point=((0.1, -0.05),))
    if kind == "persp_screen":
        return PerspectiveCameras(
            R=R, T=T, focal_length=((30.0, 34.0),), principal_point=((5.5, 4.2),),
            in_ndc=False, image_size=(image_size,),
        )
    if kind == "ortho":
        return OrthographicCameras(R=R, T=T, focal_length=0.8)
    return FoVOrthographicCameras(R=R, T=T)


def _grid(occupied=True, res=16, aabb=(-1, -0.5, -1, 1, 0.5, 1)):
    g = OccupancyGrid(aabb=aabb, resolution=res)
    if not occupied:
        g.update(lambda x: (x.norm(dim=-1) < 0.45).float() * 100, step=0)
    return g


@pytest.mark.parametrize("kind", ["fov", "persp_ndc", "persp_screen", "ortho", "fov_ortho"])
@pytest.mark.parametrize("unit", [False, True])
@pytest.mark.parametrize("size", [(W, H), (H, H)])
def test_full_grid_rays_match_pytorch3d(kind, unit, size):
    w, h = size
    cams = _cameras(kind, image_size=(h, w))
    ours = OccupancyGridRaysampler(image_width=w, image_height=h, unit_directions=unit, occupancy_grid=_grid())(cams)
    stock = NDCMultinomialRaysampler(
        image_width=w, image_height=h, n_pts_per_ray=4, min_depth=0.5, max_depth=5.0, unit_directions=unit
    )(cams)
    assert isinstance(ours, PackedRayBundle) and ours.origins.shape == (2, h, w, 3)
    assert torch.equal(ours.xys, stock.xys)
    torch.testing.assert_close(ours.origins, stock.origins, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.directions, stock.directions, atol=1e-5, rtol=0)
    assert torch.equal(ours.camera_ids, torch.arange(2)[:, None, None].expand(2, h, w))


def test_random_pixels_mask_and_bounds_match_multinomial():
    cams = _cameras("persp_ndc")
    kw = dict(min_x=1.0, max_x=-1.0, min_y=0.7, max_y=-0.7, image_width=W, image_height=H)
    stock = MultinomialRaysampler(n_pts_per_ray=3, min_depth=1.0, max_depth=4.0, **kw)
    ours = OccupancyGridRaysampler(occupancy_grid=_grid(), **kw)
    full_stock, full_ours = stock(cams), ours(cams)
    torch.testing.assert_close(full_ours.origins, full_stock.origins, atol=1e-5, rtol=0)
    for call in (dict(n_rays_per_image=7), dict(mask=torch.rand(2, H, W) > 0.5)):
        torch.manual_seed(3)
        s = stock(cams, **{k: (v.float() if torch.is_tensor(v) else v) for k, v in call.items()})
        torch.manual_seed(3)
        o = ours(cams, **call)
        assert o.xys.shape == s.xys.shape and o.xys.shape[2] == 1
        assert torch.equal(o.xys, s.xys)
        torch.testing.assert_close(o.directions, s.directions, atol=1e-5, rtol=0)
        torch.testing.assert_close(o.origins, s.origins, atol=1e-5, rtol=0)


def test_monte_carlo_matches():
    cams = _cameras("fov")
    kw = dict(min_x=-0.8, max_x=0.9, min_y=-0.5, max_y=0.6, n_rays_per_image=9)
    torch.manual_seed(5)
    s = MonteCarloRaysampler(n_pts_per_ray=3, min_depth=1.0, max_depth=4.0, unit_directions=True, **kw)(cams)
    torch.manual_seed(5)
    o = OccupancyGridRaysampler(occupancy_grid=_grid(), unit_directions=True, **kw)(cams)
    assert o.xys.shape == (2, 9, 2) and torch.equal(o.xys, s.xys)
    torch.testing.assert_close(o.origins, s.origins, atol=1e-5, rtol=0)
    torch.testing.assert_close(o.directions, s.directions, atol=1e-5, rtol=0)


def test_patches():
    cams = _cameras("fov")
    stock = NDCMultinomialRaysampler(image_width=W, image_height=H, n_pts_per_ray=1, min_depth=1, max_depth=2)(cams)
    out = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=_grid(), patch_size=4)(cams)
    assert out.xys.shape == (2, 4, 4, 2)
    for b in range(2):
        hit = (stock.xys[b].reshape(-1, 1, 2) == out.xys[b].reshape(1, -1, 2)).all(-1).nonzero()
        assert hit.shape[0] == 16  # every patch pixel is one grid pixel
        rows, cols = hit[:, 0] // W, hit[:, 0] % W
        assert int(rows.max() - rows.min()) == 3 and int(cols.max() - cols.min()) == 3
        torch.testing.assert_close(out.origins[b].reshape(-1, 3)[hit[:, 1]], stock.origins[b].reshape(-1, 3)[hit[:, 0]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("unit", [False, True])
def test_dense_all_occupied_reproduces_linspace(unit):
    cams = _cameras("fov")
    grid = _grid(aabb=(-4, -4, -4, 4, 4, 4))  # contains every point of [1, 4.5] on every ray
    kw = dict(image_width=W, image_height=H, n_pts_per_ray=9, min_depth=1.0, max_depth=4.5, unit_directions=unit)
    ours = OccupancyGridRaysampler(mode="dense", occupancy_grid=grid, **kw)(cams)
    stock = NDCMultinomialRaysampler(**kw)(cams)
    assert type(ours) is RayBundle
    assert torch.equal(ours.lengths, stock.lengths)
    torch.testing.assert_close(ray_bundle_to_ray_points(ours), ray_bundle_to_ray_points(stock), atol=1e-5, rtol=0)


def test_dense_points_lie_in_occupied_space():
    cams = _cameras("fov")
    grid = _grid(occupied=False)
    out = OccupancyGridRaysampler(
        image_width=W, image_height=H, n_pts_per_ray=16, min_depth=0.5, max_depth=6.0, mode="dense",
        occupancy_grid=grid, stratified_sampling=True,
    )(cams)
    pts = ray_bundle_to_ray_points(out).reshape(-1, 16, 3)
    assert bool((out.lengths[..., 1:] >= out.lengths[..., :-1]).all())
    packed = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid)(cams)
    has = packed.packed_info[:, 1] > 0
    assert 0 < int(has.sum()) < has.numel()
    # Occupancy is resolved in steps of 1/4 cell: a point is in an occupied cell, or 1/8 cell
    # (half a step) along its ray from one.
    u = torch.nn.functional.normalize(out.directions, dim=-1).reshape(-1, 1, 3)[has].expand(-1, 16, -1)
    p, u = pts[has].reshape(-1, 3), u.reshape(-1, 3)
    half = 2.0 / 16 / 8 + 1e-6
    occ = grid.is_occupied(p)
    near_occ = occ | grid.is_occupied(p + half * u) | grid.is_occupied(p - half * u)
    assert bool(near_occ.all()) and occ.float().mean() > 0.9
    lin = torch.linspace(0.5, 6.0, 16)
    assert not torch.equal(out.lengths.reshape(-1, 16)[has][0], lin)


@pytest.mark.parametrize("unit", [False, True])
def test_packed_samples_equal_bruteforce(unit):
    cams = _cameras("persp_ndc")
    cams = PerspectiveCameras64(R=cams.R.double(), T=cams.T.double(), focal_length=cams.focal_length.double(), principal_point=cams.principal_point.double())
    grid = _grid(occupied=False)
    sampler = OccupancyGridRaysampler(
        image_width=W, image_height=H, occupancy_grid=grid, unit_directions=unit, min_depth=0.3,
        max_depth=3.2, dt_min=0.03, max_samples_per_ray=12,
    )
    out = sampler(cams)
    o, d = out.origins.reshape(-1, 3), out.directions.reshape(-1, 3)
    want = reference.occupancy_march(
        o, d, grid.aabb.double(), grid.bitfield, cascades=1, resolution=16, t_min=0.3, t_max=3.2,
        dt_min=0.03, max_samples=12,
    )
    assert torch.equal(out.packed_info, want[3]) and torch.equal(out.ray_indices, want[0])
    torch.testing.assert_close(out.t_starts, want[1], atol=1e-9, rtol=0)
    torch.testing.assert_close(out.t_ends, want[2], atol=1e-9, rtol=0)
    pts = out.sample_points()
    assert pts.shape[0] > 50
    box = grid.aabb.double()
    assert bool(((pts >= box[:3]) & (pts <= box[3:])).all())
    assert bool(grid.is_occupied(pts).all())
    depth = out.t_mids() if unit else out.t_mids() * d.norm(dim=-1)[out.ray_indices]
    assert bool((depth >= 0.3 * (1 if unit else 1)).all())


def _pruning_field(radius):
    """A field exposing only density(points, radius=, camera_index=): sigma 1e3 inside a ball
    whose radius is per camera."""

    def density(points, radius=radius, camera_index=None):
        return (points.norm(dim=-1) < radius[camera_index]).float() * 1e3

    return SimpleNamespace(density=density)


@pytest.mark.parametrize("alpha_thre,t_thresh", [(1e-3, 1e-4), (0.0, 1e-2), (0.5, 0.0)])
def test_sigma_pruning_keeps_what_the_compositor_weights(alpha_thre, t_thresh):
    cams = _cameras("fov")
    grid = OccupancyGrid(resolution=16)  # all occupied: the field decides
    radius = torch.tensor([0.5, 0.8])
    field = _pruning_field(radius)
    full = OccupancyGridRaysampler(image_width=W, image_height=H, dt_min=0.02, occupancy_grid=grid)(cams)
    pruned = OccupancyGridRaysampler(image_width=W, image_height=H, dt_min=0.02, occupancy_grid=grid,
                                     alpha_thre=alpha_thre, t_thresh=t_thresh)(cams, volumetric_function=field)
    assert 0 < pruned.n_samples < full.n_samples
    # Independent expectation: per ray, the transmittance in front of each sample (a Python loop,
    # the raymarcher's product with eps 1e-10) against t_thresh; alpha against alpha_thre.
    cam = full.camera_ids.reshape(-1)[full.ray_indices]
    sigma = field.density(full.sample_points(), camera_index=cam)
    deltas = full.deltas()
    visible = torch.ones(sigma.shape[0], dtype=torch.bool)
    for start, count in full.packed_info.tolist():
        trans = 1.0
        for s in range(start, start + count):
            visible[s] = t_thresh == 0 or trans >= t_thresh
            trans *= math.exp(-float(sigma[s]) * float(deltas[s])) + 1e-10
    keep = (1 - torch.exp(-sigma * deltas) >= alpha_thre) & visible
    assert torch.equal(pruned.ray_indices, full.ray_indices[keep])
    assert torch.equal(pruned.t_starts, full.t_starts[keep])
    assert torch.equal(pruned.packed_info[:, 0], torch.cumsum(pruned.packed_info[:, 1], 0) - pruned.packed_info[:, 1])
    # Per-camera conditioning reaches the density: camera 1's ball is bigger (alpha_thre > 0
    # keeps only samples inside; t_thresh alone also keeps the empty ones in front).
    pts, cam_p = pruned.sample_points(), pruned.camera_ids.reshape(-1)[pruned.ray_indices]
    if alpha_thre > 0:
        assert bool((pts.norm(dim=-1) < radius[cam_p] + 1e-6).all())
        assert float(pts[cam_p == 1].norm(dim=-1).max()) > 0.6
    if t_thresh >= 1e-4:  # alpha ~ 1 per sample inside: opaque after the first sample there
        inside = (pts.norm(dim=-1) < radius[cam_p]).long()
        assert int(torch.zeros(pruned.packed_info.shape[0], dtype=torch.long).index_add_(
            0, pruned.ray_indices, inside).max()) <= 2


def test_sigma_pruning_keeps_a_transparent_start():
    """A field of sigma 1e-6 (alpha rounds to 0 in float32) keeps every sample with t_thresh:
    the rays are not opaque anywhere, and those samples carry the gradient that makes them so."""
    cams = _cameras("fov")
    grid = OccupancyGrid(resolution=16)
    field = SimpleNamespace(density=lambda points: torch.full(points.shape[:1], 1e-6))
    full = OccupancyGridRaysampler(image_width=W, image_height=H, dt_min=0.02, occupancy_grid=grid)(cams)
    assert bool((1 - torch.exp(-field.density(full.sample_points()) * full.deltas()) == 0).all())
    pruned = OccupancyGridRaysampler(image_width=W, image_height=H, dt_min=0.02, occupancy_grid=grid,
                                     t_thresh=1e-4)(cams, volumetric_function=field)
    assert torch.equal(pruned.ray_indices, full.ray_indices) and torch.equal(pruned.t_starts, full.t_starts)


def test_renders_docstring_sphere_like_stock_sampler():
    """PyTorch3D's ImplicitRenderer docstring sphere (radius moved to 0.5 so it is visible)."""

    def sphere(ray_bundle, **kwargs):
        pts = ray_bundle_to_ray_points(ray_bundle)
        dens = torch.sigmoid(-100.0 * (pts.norm(dim=-1, keepdim=True) - 0.5))
        return dens, torch.nn.functional.normalize(pts, dim=-1) * 0.5 + 0.5

    R, T = look_at_view_transform(dist=2.7, elev=20.0, azim=40.0)
    cams = FoVPerspectiveCameras(R=R, T=T, fov=45.0)
    grid = OccupancyGrid(resolution=32, dilation=1)
    grid.update(lambda x: torch.sigmoid(-100.0 * (x.norm(dim=-1) - 0.5)) / grid.step_size, step=0)
    assert grid.occupancy_fraction < 0.15
    kw = dict(image_width=24, image_height=24, min_depth=1.2, max_depth=4.2)
    stock = ImplicitRenderer(NDCMultinomialRaysampler(n_pts_per_ray=256, **kw), EmissionAbsorptionRaymarcher())
    ours = ImplicitRenderer(
        OccupancyGridRaysampler(mode="dense", n_pts_per_ray=64, occupancy_grid=grid, **kw),
        EmissionAbsorptionRaymarcher(),
    )
    img_s, _ = stock(cameras=cams, volumetric_function=sphere)
    img_o, _ = ours(cameras=cams, volumetric_function=sphere)
    err = (img_o - img_s).abs()
    assert float(img_s[..., 3].mean()) > 0.1  # the sphere is in view
    assert float(err.mean()) < 0.01 and float(err.quantile(0.99)) < 0.1


@pytest.mark.parametrize("unit", [False, True])
def test_gradcheck_sample_points_wrt_camera(unit):
    """float64 gradcheck of packed sample points w.r.t. R (axis-angle) and T, plus the focal
    length with unit directions.

    The camera sits inside a large all-occupied box with a depth range inside it, so the sample
    t values stay fixed under the perturbation (as PyTorch3D's lengths are). With
    unit_directions=False, t is a z-depth and the metric lattice maps to it through |d|, which
    depends on the focal length: there only R and T are checked."""
    grid = OccupancyGrid(aabb=(-4, -4, -4, 4, 4, 4), resolution=8)
    sampler = OccupancyGridRaysampler(
        image_width=3, image_height=2, min_depth=0.5, max_depth=1.5, dt_min=0.3,
        occupancy_grid=grid, unit_directions=unit,
    )
    log_rot = torch.tensor([[0.2, -0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    trans = torch.tensor([[0.1, -0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    focal = torch.tensor([[1.5, 1.7]], dtype=torch.float64, requires_grad=unit)

    def points(lr, t, f=focal):
        cams = PerspectiveCameras64(R=so3_exp_map(lr), T=t, focal_length=f, principal_point=torch.zeros(1, 2, dtype=torch.float64))
        return sampler(cams).sample_points()

    assert points(log_rot, trans).shape[0] >= 6 * 3
    inputs = (log_rot, trans, focal) if unit else (log_rot, trans)
    assert torch.autograd.gradcheck(points, inputs, eps=1e-6, atol=1e-6)


def test_bad_and_empty_inputs():
    cams = _cameras("fov")
    grid = _grid(occupied=False)
    s = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid)
    with pytest.raises(ValueError, match="needs occupancy_grid"):
        OccupancyGridRaysampler(image_width=W, image_height=H, mode="packed")
    with pytest.raises(ValueError, match="finite max_depth"):  # no grid: the stock dense sampler
        OccupancyGridRaysampler(image_width=W, image_height=H)(cams)
    with pytest.raises(TypeError, match="OccupancyGrid"):
        OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=SimpleNamespace(occupancy_grid=grid))
    with pytest.raises(ValueError, match="pruning"):
        OccupancyGridRaysampler(image_width=W, image_height=H, mode="dense", occupancy_grid=grid, t_thresh=1e-4)
    with pytest.raises(ValueError, match="density"):
        OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, t_thresh=1e-4)(cams)
    with pytest.raises(ValueError, match="cameras are on"):
        s(SimpleNamespace(device=torch.device("cuda:0")))
    bad = FoVPerspectiveCameras(R=cams.R, T=cams.T.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        s(bad)
    with pytest.raises(ValueError, match="mask must have shape"):
        s(cams, mask=torch.ones(2, H, W + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask selects no pixel"):
        s(cams, mask=torch.zeros(2, H, W, dtype=torch.bool), n_rays_per_image=3)
    empty = s(cams, mask=torch.zeros(2, H, W, dtype=torch.bool))
    assert empty.n_rays == 0 and empty.n_samples == 0 and empty.packed_info.shape == (0, 2)
    with pytest.raises(ValueError, match="mode"):
        OccupancyGridRaysampler(image_width=W, image_height=H, mode="sparse")
    with pytest.raises(ValueError, match="min_depth"):
        s(cams, min_depth=3.0, max_depth=2.0)
    for bad in (0, -3, W * H + 1):
        with pytest.raises(ValueError, match="n_rays_per_image"):
            s(cams, n_rays_per_image=bad)
    with pytest.raises(ValueError, match="n_rays_total"):
        s(cams, n_rays_total=0)
    # Rays that miss the box, and an empty grid: zero samples, every ray still present.
    away = FoVPerspectiveCameras(R=cams.R, T=cams.T * torch.tensor([1.0, 1.0, -1.0]))
    out = s(away)
    assert out.n_samples == 0 and out.packed_info.shape == (2 * W * H, 2)
    grid.set_occupancy(torch.zeros(1, 16**3, dtype=torch.bool))
    assert s(cams).n_samples == 0
    dense = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, mode="dense", n_pts_per_ray=5, min_depth=1, max_depth=2)(cams)
    assert torch.equal(dense.lengths[0, 0, 0], torch.linspace(1, 2, 5))
    with pytest.raises(ValueError, match="finite max_depth"):
        OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, mode="dense")(cams)
    # min_depth == max_depth is accepted (PyTorch3D accepts it): packed rays get no samples.
    assert s(cams, min_depth=2.0, max_depth=2.0).n_samples == 0
