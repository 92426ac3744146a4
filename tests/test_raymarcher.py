"""OccupancyGridRaymarcher as a drop-in for EmissionAbsorptionRaymarcher inside ImplicitRenderer."""

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
