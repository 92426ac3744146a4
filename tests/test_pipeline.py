"""The swap matrix: our raysampler and raymarcher in ImplicitRenderer, with and without stock parts."""

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, NDCMultinomialRaysampler, look_at_view_transform)
from pytorch3d.renderer.implicit.utils import ray_bundle_to_ray_points

from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler,
                                   PackedRayBundle)

RADIUS = 0.5
KW = dict(image_width=24, image_height=24, min_depth=1.2, max_depth=4.2)


def sphere(ray_bundle, **kwargs):
    """PyTorch3D's docstring RGB sphere (radius 0.5); packed bundles give per-sample outputs."""
    if isinstance(ray_bundle, PackedRayBundle):
        pts = ray_bundle.sample_points()
    else:
        pts = ray_bundle_to_ray_points(ray_bundle)
    dens = torch.sigmoid(-100.0 * (pts.norm(dim=-1, keepdim=True) - RADIUS))
    return dens, torch.nn.functional.normalize(pts, dim=-1) * 0.5 + 0.5


@pytest.fixture(scope="module")
def grid():
    g = OccupancyGrid(resolution=32, dilation=1)
    g.update(lambda x: torch.sigmoid(-100.0 * (x.norm(dim=-1) - RADIUS)) / g.step_size, step=0)
    return g


def cameras():
    R, T = look_at_view_transform(dist=2.7, elev=20.0, azim=40.0)
    return FoVPerspectiveCameras(R=R, T=T, fov=45.0)


def reference_image():
    stock = ImplicitRenderer(NDCMultinomialRaysampler(n_pts_per_ray=256, **KW), EmissionAbsorptionRaymarcher())
    return stock(cameras=cameras(), volumetric_function=sphere)[0]


@pytest.mark.parametrize("raymarcher", ["stock", "ours"])
def test_dense_occupancy_raysampler_with_either_raymarcher(grid, raymarcher):
    rm = EmissionAbsorptionRaymarcher() if raymarcher == "stock" else OccupancyGridRaymarcher(t_thresh=0.0)
    renderer = ImplicitRenderer(OccupancyGridRaysampler(mode="dense", n_pts_per_ray=64, occupancy_grid=grid, **KW), rm)
    img, _ = renderer(cameras=cameras(), volumetric_function=sphere)
    want = reference_image()
    err = (img - want).abs()
    assert float(want[..., 3].mean()) > 0.1
    assert float(err.mean()) < 0.01 and float(err.quantile(0.99)) < 0.1


def test_monte_carlo_with_our_raymarcher_matches_stock():
    rs = MonteCarloRaysampler(-1, 1, -1, 1, 200, 64, 1.2, 4.2)
    torch.manual_seed(0)
    want, _ = ImplicitRenderer(rs, EmissionAbsorptionRaymarcher())(cameras=cameras(), volumetric_function=sphere)
    torch.manual_seed(0)
    got, _ = ImplicitRenderer(rs, OccupancyGridRaymarcher(t_thresh=0.0))(cameras=cameras(), volumetric_function=sphere)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_packed_pipeline_renders_the_sphere(grid):
    """Packed samples + our raymarcher. The field returns opacities for the packed samples; with
    a fine fixed step the image approaches the stock render."""
    rs = OccupancyGridRaysampler(occupancy_grid=grid, dt_min=0.01, dt_max=0.01, **KW)
    img, bundle = ImplicitRenderer(rs, OccupancyGridRaymarcher(t_thresh=0.0))(
        cameras=cameras(), volumetric_function=sphere)
    assert isinstance(bundle, PackedRayBundle) and img.shape == (1, 24, 24, 4)
    want = reference_image()
    assert float((img[..., 3] - want[..., 3]).abs().mean()) < 0.03
