"""ray_points / sample_camera_index: one per-sample view of dense, heterogeneous and packed bundles.

References are independent of the code under test: points from PyTorch3D's
``ray_bundle_to_ray_points`` or from each sample's own ray, deltas as the distance between a
sample's interval ends, and each sample's camera from its ray's origin (a perspective ray starts
at its camera's centre).
"""

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, NDCMultinomialRaysampler, look_at_view_transform)
from pytorch3d.renderer.implicit.utils import HeterogeneousRayBundle, ray_bundle_to_ray_points

from pt3d_radnerf.models import AudioRadianceField, is_packed, ray_points, sample_camera_index
from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler

KW = dict(image_width=12, image_height=10, min_depth=1.2, max_depth=4.2)


def cameras(n=3):
    R, T = look_at_view_transform(dist=torch.linspace(2.5, 3.0, n), elev=torch.linspace(0, 30, n),
                                  azim=torch.linspace(-40, 40, n))
    return FoVPerspectiveCameras(R=R, T=T, fov=45.0)


def full_grid():
    g = OccupancyGrid(resolution=16)
    g.update(lambda x: torch.full(x.shape[:1], 1e3), step=0)
    return g


def assert_camera_of_each_sample(bundle, cams):
    """sample_camera_index against the camera whose centre each sample's ray starts from."""
    cam = sample_camera_index(bundle)
    pts = ray_points(bundle)
    assert cam.dtype == torch.long and cam.shape == pts.deltas.shape
    if is_packed(bundle):
        origins = bundle.origins.reshape(-1, 3)[bundle.ray_indices]
    else:
        origins = bundle.origins[..., None, :].expand(pts.points.shape)
    centres = cams.get_camera_center()
    torch.testing.assert_close(centres[cam.reshape(-1)], origins.reshape(-1, 3), atol=1e-4, rtol=0)
    assert len(cam.unique()) == len(cams)


@pytest.mark.parametrize("unit", [False, True])
def test_dense_bundle(unit):
    cams = cameras()
    bundle = NDCMultinomialRaysampler(n_pts_per_ray=7, unit_directions=unit, stratified_sampling=True, **KW)(cams)
    pts, dirs, deltas = ray_points(bundle)
    assert not is_packed(bundle) and pts.shape == (3, 10, 12, 7, 3) and deltas.shape == (3, 10, 12, 7)
    torch.testing.assert_close(pts, ray_bundle_to_ray_points(bundle))
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones_like(deltas))
    torch.testing.assert_close(torch.linalg.cross(dirs, bundle.directions[..., None, :].expand_as(dirs)),
                               torch.zeros_like(dirs), atol=1e-6, rtol=0)
    gaps = (pts[..., 1:, :] - pts[..., :-1, :]).norm(dim=-1)  # metric distance between samples
    torch.testing.assert_close(deltas[..., :-1], gaps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(deltas[..., -1], gaps[..., -1], rtol=1e-4, atol=1e-5)
    assert_camera_of_each_sample(bundle, cams)


def test_dense_bundle_with_one_sample_per_ray_is_unbounded():
    bundle = MonteCarloRaysampler(-1, 1, -1, 1, 5, 1, 1.0, 2.0)(cameras(2))
    assert (ray_points(bundle).deltas >= 1e9).all()


@pytest.mark.parametrize("camera_ids", [True, False])
def test_packed_bundle(camera_ids):
    cams = cameras()
    bundle = OccupancyGridRaysampler(occupancy_grid=full_grid(), dt_min=0.05, dt_max=0.05, **KW)(cams)
    if not camera_ids:
        bundle.camera_ids = None  # rays laid out one camera per batch row: the row decides
    pts, dirs, deltas = ray_points(bundle)
    s = bundle.n_samples
    assert is_packed(bundle) and s > 100 and pts.shape == (s, 3) and dirs.shape == (s, 3) and deltas.shape == (s,)
    o = bundle.origins.reshape(-1, 3)[bundle.ray_indices]
    d = bundle.directions.reshape(-1, 3)[bundle.ray_indices]
    mid = 0.5 * (bundle.t_starts + bundle.t_ends)
    torch.testing.assert_close(pts, o + mid[:, None] * d)
    torch.testing.assert_close(dirs, d / d.norm(dim=-1, keepdim=True))
    ends = (o + bundle.t_ends[:, None] * d) - (o + bundle.t_starts[:, None] * d)
    torch.testing.assert_close(deltas, ends.norm(dim=-1), rtol=1e-4, atol=1e-6)
    assert_camera_of_each_sample(bundle, cams)


def test_heterogeneous_bundle():
    cams = cameras(4)
    torch.manual_seed(3)
    bundle = MonteCarloRaysampler(-1, 1, -1, 1, None, 5, 1.0, 3.0, n_rays_total=40)(cams)
    assert isinstance(bundle, HeterogeneousRayBundle) and len(bundle.camera_ids) > 1
    torch.testing.assert_close(ray_points(bundle).points, ray_bundle_to_ray_points(bundle))
    cam = sample_camera_index(bundle)
    centres = cams.get_camera_center()
    torch.testing.assert_close(centres[cam.reshape(-1)],
                               bundle.origins[..., None, :].expand(*cam.shape, 3).reshape(-1, 3), atol=1e-4, rtol=0)


def sphere(ray_bundle, **kwargs):
    """A field written once for both bundle kinds: opacity of a dense ball of radius 0.5."""
    pts, _, deltas = ray_points(ray_bundle)
    sigma = 40.0 * (pts.norm(dim=-1) < 0.5).to(pts.dtype)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    return alpha[..., None], torch.nn.functional.normalize(pts, dim=-1) * 0.5 + 0.5


def test_one_code_path_renders_with_stock_and_packed_pipelines():
    cams = cameras(1)
    stock, _ = ImplicitRenderer(NDCMultinomialRaysampler(n_pts_per_ray=256, **KW), EmissionAbsorptionRaymarcher())(
        cameras=cams, volumetric_function=sphere)
    packed, bundle = ImplicitRenderer(
        OccupancyGridRaysampler(occupancy_grid=full_grid(), dt_min=0.01, dt_max=0.01, **KW),
        OccupancyGridRaymarcher(t_thresh=0.0))(cameras=cams, volumetric_function=sphere)
    assert is_packed(bundle) and stock.shape == packed.shape == (1, 10, 12, 4)
    assert float(stock[..., 3].mean()) > 0.1
    assert float((stock - packed).abs().mean()) < 0.02


def test_field_on_a_heterogeneous_bundle_uses_each_rays_camera():
    cams = cameras(3)
    field = AudioRadianceField((4, 6), num_frames=3, log2_hashmap_size=10)
    torch.manual_seed(4)
    bundle = MonteCarloRaysampler(-1, 1, -1, 1, None, 6, 2.0, 4.0, n_rays_total=30)(cams)
    audio, eye = torch.randn(3, 8, 4, 6), torch.tensor([0.1, 0.3, 0.5])
    aux = {}
    with torch.no_grad():
        alpha, rgb = field(bundle, cameras=cams, audio=audio, eye=eye, aux_out=aux)
        pts = ray_points(bundle).points.reshape(-1, 3)
        sigma = field.density(pts, audio=audio, eye=eye, camera_index=sample_camera_index(bundle).reshape(-1))
    assert alpha.shape == (*bundle.lengths.shape, 1) and rgb.shape == (*bundle.lengths.shape, 3)
    torch.testing.assert_close(aux["sigma"][0], sigma)


def test_not_a_bundle():
    with pytest.raises(TypeError, match="RayBundle-like object with tensor `origins`"):
        ray_points(torch.zeros(4, 3))
