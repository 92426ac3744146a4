"""OccupancyGridRaysampler with only a stock raysampler's arguments behaves as that sampler.

Written from PyTorch3D 0.7's documented raysampler behaviour and checked against the stock
samplers themselves: same seed, same call -> the same bundle type and bit-identical
origins/directions/lengths/xys (and camera_ids/camera_counts for heterogeneous bundles).
"""

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, MultinomialRaysampler, NDCMultinomialRaysampler,
                                PerspectiveCameras, look_at_view_transform, ray_bundle_to_ray_points)
from pytorch3d.renderer.implicit.utils import HeterogeneousRayBundle, RayBundle

from pt3d_radnerf.renderer import OccupancyGridRaymarcher, OccupancyGridRaysampler

W, H = 10, 7
DEPTHS = dict(n_pts_per_ray=6, min_depth=1.0, max_depth=4.0)
BOUNDS = dict(min_x=0.9, max_x=-0.9, min_y=0.6, max_y=-0.6)
STOCK = {
    "ndc": (NDCMultinomialRaysampler, dict(image_width=W, image_height=H, **DEPTHS)),
    "multinomial": (MultinomialRaysampler, dict(image_width=W, image_height=H, **BOUNDS, **DEPTHS)),
    "monte_carlo": (MonteCarloRaysampler, dict(n_rays_per_image=13, **BOUNDS, **DEPTHS)),
}
VARIANTS = {
    "plain": {},
    "unit_stratified": dict(unit_directions=True, stratified_sampling=True),
    "rays_per_image": dict(n_rays_per_image=11),
    "rays_total": dict(n_rays_total=9),
    "equal_depths": dict(min_depth=2.0, max_depth=2.0),
    "no_points": dict(n_pts_per_ray=0),
}


def cameras(batch=3):
    R, T = look_at_view_transform(dist=[2.5, 3.0, 3.5][:batch], elev=[0, 20, -30][:batch], azim=[0, 50, 170][:batch])
    return FoVPerspectiveCameras(R=R, T=T, fov=50.0)


def assert_same_bundle(got, want):
    assert type(got) is type(want)
    for name in ("origins", "directions", "lengths", "xys"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name
    if isinstance(want, HeterogeneousRayBundle):
        assert torch.equal(got.camera_ids, want.camera_ids)
        assert torch.equal(got.camera_counts, want.camera_counts)


def build(kind, variant):
    cls, kw = STOCK[kind]
    kw = dict(kw, **VARIANTS[variant])
    if kind == "monte_carlo" and variant == "rays_total":
        kw["n_rays_per_image"] = None
    if kind != "monte_carlo" and variant == "rays_per_image":
        pass
    return cls(**kw), OccupancyGridRaysampler(**kw)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kind", sorted(STOCK))
def test_stock_arguments_give_the_stock_bundle(kind, variant):
    stock, ours = build(kind, variant)
    for seed in (0, 1):
        torch.manual_seed(seed)
        want = stock(cameras())
        torch.manual_seed(seed)
        got = ours(cameras())
        assert_same_bundle(got, want)
    if variant == "rays_total":
        assert isinstance(got, HeterogeneousRayBundle) and got.origins.shape[0] == 9


@pytest.mark.parametrize("call", [dict(n_rays_per_image=5), dict(n_rays_total=4), dict(n_pts_per_ray=3),
                                  dict(min_depth=0.5, max_depth=0.5), dict(stratified_sampling=True),
                                  dict(mask="bool"), dict(mask="weights", n_rays_per_image=20),
                                  dict(mask="sparse", n_rays_per_image=6)])
@pytest.mark.parametrize("kind", ["ndc", "multinomial"])
def test_per_call_options_and_masks_as_stock(kind, call):
    stock, ours = build(kind, "plain")
    call = dict(call)
    if "mask" in call:
        g = torch.Generator().manual_seed(4)
        mask = {"bool": torch.rand(3, H, W, generator=g) > 0.5,
                "weights": torch.rand(3, H, W, generator=g) * (torch.rand(3, H, W, generator=g) > 0.3),
                # Image 1 has 3 pixels < 6 rays: drawn with replacement there only (PyTorch3D's rule).
                "sparse": (torch.arange(H * W).reshape(1, H, W) % torch.tensor([2, 23, 3])[:, None, None]) == 0,
                }[call["mask"]]
        call["mask"] = mask.float()
    torch.manual_seed(7)
    want = stock(cameras(), **call)
    torch.manual_seed(7)
    got = ours(cameras(), **call)
    assert_same_bundle(got, want)


@pytest.mark.parametrize("kind", sorted(STOCK))
def test_renders_like_the_stock_renderer(kind):
    def sphere(ray_bundle, **kwargs):
        pts = ray_bundle_to_ray_points(ray_bundle)
        dens = torch.sigmoid(-50.0 * (pts.norm(dim=-1, keepdim=True) - 0.7))
        return dens, torch.nn.functional.normalize(pts, dim=-1) * 0.5 + 0.5

    stock, ours = build(kind, "plain")
    torch.manual_seed(2)
    want, _ = ImplicitRenderer(stock, EmissionAbsorptionRaymarcher())(cameras=cameras(), volumetric_function=sphere)
    torch.manual_seed(2)
    got, _ = ImplicitRenderer(ours, EmissionAbsorptionRaymarcher())(cameras=cameras(), volumetric_function=sphere)
    assert torch.equal(got, want) and float(want[..., 3].max()) > 0.5


def test_heterogeneous_bundle_layout():
    """PyTorch3D's contract: n_rays_total rays as (n_rays_total, 1, ...), camera_counts summing to it,
    each ray's origin the optical centre of a camera in camera_ids."""
    cams = cameras()
    torch.manual_seed(3)
    b = OccupancyGridRaysampler(image_width=W, image_height=H, n_rays_total=50, **DEPTHS)(cams)
    assert b.origins.shape == (50, 1, 1, 3) and b.lengths.shape == (50, 1, 1, 6)
    assert int(b.camera_counts.sum()) == 50 and len(set(b.camera_ids.tolist())) == len(b.camera_ids)
    centres = cams.get_camera_center()[b.camera_ids.repeat_interleave(b.camera_counts)]
    # Rays of a perspective camera pass through its centre: origin + s * direction hits it.
    o, d = b.origins.reshape(-1, 3), b.directions.reshape(-1, 3)
    s = ((centres - o) * d).sum(-1, keepdim=True) / (d * d).sum(-1, keepdim=True)
    torch.testing.assert_close(o + s * d, centres, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="cannot both"):
        OccupancyGridRaysampler(image_width=W, image_height=H, n_rays_total=5, n_rays_per_image=3, **DEPTHS)
    with pytest.raises(ValueError, match="cannot both"):
        OccupancyGridRaysampler(image_width=W, image_height=H, n_rays_per_image=3, **DEPTHS)(cams, n_rays_total=5)


def test_kwargs_rule():
    """ImplicitRenderer passes every kwarg to every component: raymarcher options and aux_out are
    ignored, field arguments pass, anything else is a TypeError naming it."""
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, **DEPTHS)
    cams = cameras(1)
    with pytest.raises(TypeError, match="n_rays_totl"):
        sampler(cams, n_rays_totl=5)
    assert isinstance(sampler(cams, background=1.0, t_thresh=1e-3, return_aux=True, eps=1e-8, aux_out={}), RayBundle)

    def field(ray_bundle, audio=None, cameras=None):
        pts = ray_bundle_to_ray_points(ray_bundle)
        return torch.full_like(pts[..., :1], 0.1), torch.ones_like(pts)

    sampler(cams, volumetric_function=field, audio=torch.zeros(1, 3), t_thresh=0.0, aux_out={})
    with pytest.raises(TypeError, match=r"\['eye'\]"):
        sampler(cams, volumetric_function=field, eye=torch.zeros(1))

    def open_field(ray_bundle, **kwargs):
        return field(ray_bundle)

    renderer = ImplicitRenderer(sampler, OccupancyGridRaymarcher())
    renderer(cameras=cams, volumetric_function=open_field, eye=torch.zeros(1), t_thresh=0.0)  # **kwargs: anything


def test_float64_cameras_keep_stock_dtypes():
    R, T = look_at_view_transform(dist=3.0, elev=10.0, azim=20.0)
    cams = PerspectiveCameras(R=R.double(), T=T.double(), focal_length=2.0)
    stock, ours = build("ndc", "plain")
    assert_same_bundle(ours(cams), stock(cams))
