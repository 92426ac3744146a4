"""OccupancyGridRaymarcher as a drop-in for EmissionAbsorptionRaymarcher inside ImplicitRenderer."""

import warnings

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, NDCMultinomialRaysampler, look_at_view_transform)
from pytorch3d.renderer.implicit.utils import RayBundle, ray_bundle_to_ray_points

from pt3d_radnerf.renderer import OccupancyGridRaymarcher, PackedRayBundle, pack_info


def sphere(ray_bundle, **kwargs):
    """PyTorch3D's ImplicitRenderer docstring field: an RGB sphere."""
    points = ray_bundle_to_ray_points(ray_bundle)
    densities = torch.sigmoid(-100.0 * (points.norm(dim=-1, keepdim=True) - 0.8))
    return densities, torch.nn.functional.normalize(points, dim=-1) * 0.5 + 0.5


def cameras():
    R, T = look_at_view_transform(dist=torch.tensor([2.7, 3.0]), elev=torch.tensor([10.0, 40.0]),
                                  azim=torch.tensor([0.0, 70.0]))
    return FoVPerspectiveCameras(R=R, T=T)


RAYSAMPLERS = {
    "ndc_grid": lambda: NDCMultinomialRaysampler(image_width=24, image_height=20, n_pts_per_ray=48,
                                                 min_depth=1.5, max_depth=4.5),
    "monte_carlo": lambda: MonteCarloRaysampler(min_x=-1, max_x=1, min_y=-1, max_y=1, n_rays_per_image=300,
                                                n_pts_per_ray=48, min_depth=1.5, max_depth=4.5),
}


@pytest.mark.parametrize("sampler", sorted(RAYSAMPLERS))
def test_swap_matrix_stock_raysamplers(sampler):
    torch.manual_seed(0)
    rs = RAYSAMPLERS[sampler]()
    stock = ImplicitRenderer(raysampler=rs, raymarcher=EmissionAbsorptionRaymarcher())
    ours = ImplicitRenderer(raysampler=rs, raymarcher=OccupancyGridRaymarcher(t_thresh=0.0))
    torch.manual_seed(1)
    want, bundle = stock(cameras=cameras(), volumetric_function=sphere)
    torch.manual_seed(1)
    got, bundle2 = ours(cameras=cameras(), volumetric_function=sphere)
    torch.testing.assert_close(bundle2.xys, bundle.xys)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert want[..., 3].max() > 0.9 and want[..., 3].min() < 0.1  # the sphere is in view
    # Default early termination stays within threshold x max feature of the exact image.
    torch.manual_seed(1)
    fast, _ = ImplicitRenderer(raysampler=rs, raymarcher=OccupancyGridRaymarcher())(
        cameras=cameras(), volumetric_function=sphere)
    assert (fast - want).abs().max() <= 1e-4 * 1.0 + 1e-6


def test_same_value_errors_as_pytorch3d():
    rm, ea = OccupancyGridRaymarcher(), EmissionAbsorptionRaymarcher()
    bad = [(torch.rand(2, 5, 2), torch.rand(2, 5, 3)), (torch.rand(2, 5, 1), torch.rand(2, 4, 3)),
           (torch.rand(2, 5, 1), None)]
    for d, f in bad:
        with pytest.raises(ValueError):
            ea(d, f)
        with pytest.raises(ValueError):
            rm(d, f)


def test_background_variants_and_aux():
    d, f = torch.rand(2, 6, 5, 8, 1), torch.rand(2, 6, 5, 8, 3)
    rm = OccupancyGridRaymarcher(t_thresh=0.0)
    plain, aux = rm(d, f, return_aux=True)
    assert set(aux) == {"depth", "opacity", "weights"} and aux["weights"].shape == (2, 6, 5, 8)
    opacity = plain[..., 3:]
    colour = torch.tensor([0.2, 0.4, 0.9])
    for bg, expanded in [(0.5, torch.full((3,), 0.5)), (colour, colour),
                         (torch.rand(2, 6, 5, 3), None)]:
        out = rm(d, f, background=bg)
        want = plain[..., :3] + (1 - opacity) * (bg if expanded is None else expanded)
        torch.testing.assert_close(out[..., :3], want)
        torch.testing.assert_close(out[..., 3], plain[..., 3])
    with pytest.raises(ValueError, match="background must be"):
        rm(d, f, background=torch.rand(4))


def test_packed_bundle_matches_dense():
    torch.manual_seed(0)
    b, h, w, p = 2, 3, 4, 6
    origins, dirs = torch.randn(b, h, w, 3), torch.randn(b, h, w, 3)
    lengths = torch.sort(torch.rand(b, h, w, p) * 3, -1).values
    dense = RayBundle(origins, dirs, lengths, torch.zeros(b, h, w, 2))
    dens, feats = torch.rand(b, h, w, p, 1), torch.rand(b, h, w, p, 3)
    want = OccupancyGridRaymarcher(t_thresh=0.0)(dens, feats, ray_bundle=dense)
    # Same samples, packed; ray 5 keeps none of them (it must render as empty).
    keep = torch.ones(b * h * w, p, dtype=torch.bool)
    keep[5] = False
    ray_indices = torch.arange(b * h * w)[:, None].expand(-1, p)[keep]
    t = lengths.reshape(-1, p)[keep]
    packed = PackedRayBundle(origins, dirs, torch.zeros(b, h, w, 2), ray_indices, t, t,
                             pack_info(ray_indices, b * h * w))
    got = OccupancyGridRaymarcher(t_thresh=0.0)(dens.reshape(-1, p, 1)[keep], feats.reshape(-1, p, 3)[keep],
                                                ray_bundle=packed)
    assert got.shape == (b, h, w, 4)
    mask = torch.ones(b * h * w, dtype=torch.bool)
    mask[5] = False
    torch.testing.assert_close(got.reshape(-1, 4)[mask], want.reshape(-1, 4)[mask])
    assert got.reshape(-1, 4)[5].abs().sum() == 0
    with pytest.raises(ValueError, match="packed bundles need"):
        OccupancyGridRaymarcher()(torch.rand(3, 1), torch.rand(3, 3), ray_bundle=packed)


def test_sigma_mode_uses_metric_deltas():
    torch.manual_seed(0)
    origins, dirs = torch.zeros(5, 3), torch.randn(5, 3) * 2
    lengths = torch.sort(torch.rand(5, 10), -1).values
    bundle = RayBundle(origins, dirs, lengths, torch.zeros(5, 2))
    sigma, feats = torch.rand(5, 10, 1) * 3, torch.rand(5, 10, 3)
    got = OccupancyGridRaymarcher(t_thresh=0.0, density_mode="sigma")(sigma, feats, ray_bundle=bundle)
    deltas = torch.cat([lengths.diff(dim=-1), torch.full((5, 1), 1e10)], -1) * dirs.norm(dim=-1, keepdim=True)
    alpha = 1 - torch.exp(-sigma[..., 0] * deltas)
    want = EmissionAbsorptionRaymarcher()(alpha[..., None], feats)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# ---- parity with EmissionAbsorptionRaymarcher (issue 14.3, 14.4) ----------------------------------
def test_per_call_eps_like_stock():
    torch.manual_seed(0)
    d, f = torch.rand(3, 7, 1), torch.rand(3, 7, 2)
    ours, stock = OccupancyGridRaymarcher(t_thresh=0.0), EmissionAbsorptionRaymarcher()
    for eps in (1e-10, 0.1):
        # Features: the same eps-shifted transmittance. (Stock's opacity is 1 - prod(1 - a) for
        # any eps; ours is the sum of the weights, equal to it for PyTorch3D's tiny eps.)
        torch.testing.assert_close(ours(d, f, eps=eps)[..., :2], stock(d, f, eps=eps)[..., :2], atol=1e-6, rtol=0)
    assert (ours(d, f, eps=0.1) - ours(d, f)).abs().max() > 1e-3
    # ImplicitRenderer passes field kwargs (aux_out, audio, ...) to the raymarcher: ignored.
    torch.testing.assert_close(ours(d, f, aux_out={}, audio=torch.zeros(1)), ours(d, f))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype):
    torch.manual_seed(0)
    d, f = torch.rand(4, 9, 1), torch.rand(4, 9, 3)
    want = EmissionAbsorptionRaymarcher()(d.to(dtype), f.to(dtype))
    got, aux = OccupancyGridRaymarcher(t_thresh=0.0)(d.to(dtype), f.to(dtype), return_aux=True)
    assert got.dtype == want.dtype == dtype and aux["weights"].dtype == dtype
    exact = EmissionAbsorptionRaymarcher()(d, f)  # float32
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(got.float(), exact, atol=tol, rtol=0)


def test_density_range_warning_like_stock():
    d, f = torch.rand(2, 5, 1) * 2.0, torch.rand(2, 5, 3)
    for rm in (EmissionAbsorptionRaymarcher(), OccupancyGridRaymarcher()):
        with pytest.warns(UserWarning, match="outside of valid"):
            rm(d, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OccupancyGridRaymarcher()(d / 2.0, f)  # in range: silent
        OccupancyGridRaymarcher(density_mode="sigma")(d * 10, f, ray_bundle=RayBundle(
            torch.zeros(2, 3), torch.ones(2, 3), torch.linspace(1, 2, 5).expand(2, 5), torch.zeros(2, 2)))


def test_gradients_match_stock_and_double_backward_is_refused():
    torch.manual_seed(0)
    d = torch.rand(3, 6, 1, dtype=torch.float64, requires_grad=True)
    f = torch.rand(3, 6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 4, dtype=torch.float64)
    want = torch.autograd.grad((EmissionAbsorptionRaymarcher()(d, f) * w).sum(), (d, f))
    got = torch.autograd.grad((OccupancyGridRaymarcher(t_thresh=0.0)(d, f) * w).sum(), (d, f))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # Stock supports create_graph=True; ours says clearly that it does not.
    g, = torch.autograd.grad(EmissionAbsorptionRaymarcher()(d, f).sum(), d, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(OccupancyGridRaymarcher()(d, f).sum(), d, create_graph=True)


def test_packed_bundle_never_reaches_a_stock_raymarcher_silently():
    """Our packed raysampler with PyTorch3D's raymarcher and a field written for RayBundle:
    the packed bundle has no `lengths`, so the render fails with an explanation before any
    packed samples could be composited as one dense ray."""
    from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaysampler

    sampler = OccupancyGridRaysampler(image_width=16, image_height=2, occupancy_grid=OccupancyGrid(resolution=8))
    renderer = ImplicitRenderer(sampler, EmissionAbsorptionRaymarcher())
    with pytest.raises(AttributeError, match="no dense `lengths`.*OccupancyGridRaymarcher"):
        renderer(cameras=cameras(), volumetric_function=sphere)
    bundle = sampler(cameras())
    assert not hasattr(bundle, "lengths")
    with pytest.raises(AttributeError, match="mode='dense'"):
        ray_bundle_to_ray_points(bundle)
