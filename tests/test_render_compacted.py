"""Inference render helpers against the single-pass ImplicitRenderer path (same rays, grid, field)."""

import pytest
import torch
from pytorch3d.renderer import FoVPerspectiveCameras, ImplicitRenderer, look_at_view_transform

from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.models.radiance_field import RADNERF_AABB
from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler,
                                   render_chunked, render_compacted)

W, H = 20, 16
CENTRE = torch.tensor([0.1, -0.05, 0.0])


def blob_sigma(x, scale=60.0):
    """A soft ball of radius 0.5: sigma ~ scale inside, ~0 outside."""
    return scale * torch.sigmoid(30.0 * (0.5 - (x - CENTRE.to(x)).norm(dim=-1)))


class BlobField:
    """Analytic field on PackedRayBundles: alphas (or sigmas) and a view-dependent colour.
    Counts the samples it is evaluated on."""

    def __init__(self, scale=60.0, mode="alpha"):
        self.scale, self.mode, self.samples, self.calls = scale, mode, 0, 0

    def __call__(self, ray_bundle, **kwargs):
        x = ray_bundle.sample_points()
        self.samples += x.shape[0]
        self.calls += 1
        sigma = blob_sigma(x, self.scale)
        values = sigma if self.mode == "sigma" else 1.0 - torch.exp(-sigma * ray_bundle.deltas())
        rgb = torch.sigmoid(3.0 * x + ray_bundle.sample_directions())
        return values[:, None], rgb


def cameras(dtype=torch.float32):
    R, T = look_at_view_transform(dist=[2.6, 3.0], elev=[20.0, -15.0], azim=[40.0, 200.0])
    return FoVPerspectiveCameras(R=R.to(dtype), T=T.to(dtype), fov=40.0)


def blob_grid(resolution=32, cascades=1):
    grid = OccupancyGrid(resolution=resolution, cascades=cascades)
    grid.update(blob_sigma, step=0)
    assert 0.0 < grid.occupancy_fraction < 0.5
    return grid


def single_pass(cams, field, raysampler, raymarcher, **kwargs):
    images, _ = ImplicitRenderer(raysampler, raymarcher)(cameras=cams, volumetric_function=field, **kwargs)
    return images


@pytest.mark.parametrize("t_thresh", [0.0, 1e-4, 1e-2])
@pytest.mark.parametrize("dt_gamma,cascades", [(0.0, 1), (1 / 64, 2)])
def test_compacted_equals_single_pass(t_thresh, dt_gamma, cascades):
    grid = blob_grid(cascades=cascades)
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid,
                                      dt_min=1 / 64, dt_gamma=dt_gamma)
    marcher = OccupancyGridRaymarcher(t_thresh=t_thresh, background=0.3, return_aux=True)
    (ref, ref_aux), (img, aux) = (
        single_pass(cameras(), BlobField(), sampler, marcher),
        render_compacted(cameras(), BlobField(), sampler, marcher),
    )
    assert img.shape == (2, H, W, 4) and ref_aux["opacity"].max() > 0.99  # opaque in view
    # Same samples, same kernel, same stopping rule (the loop resumes the kernel at each ray's
    # transmittance): equal up to the rounding of summing a ray's features in several parts.
    torch.testing.assert_close(img, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(aux["depth"], ref_aux["depth"], atol=1e-5, rtol=0)
    # Against the render without termination, either path is within t_thresh * max feature.
    full = single_pass(cameras(), BlobField(), sampler, OccupancyGridRaymarcher(t_thresh=0.0, background=0.3))
    torch.testing.assert_close(img, full, atol=1e-5 + t_thresh, rtol=0)
    if t_thresh >= 1e-2:
        assert (img - full).abs().max() > 1e-4  # the threshold really cut samples here


def test_opaque_scene_evaluates_fewer_samples():
    grid = blob_grid()
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, dt_min=1 / 64)
    counts = {}
    for t_thresh in (0.0, 1e-4):
        marcher = OccupancyGridRaymarcher(t_thresh=t_thresh, return_aux=True)
        single, compact = BlobField(), BlobField()
        _, ref_aux = single_pass(cameras(), single, sampler, marcher)
        _, aux = render_compacted(cameras(), compact, sampler, marcher)
        assert aux["samples"] == compact.samples and compact.calls == aux["iterations"] > 1
        counts[t_thresh] = (single.samples, compact.samples, int((ref_aux["weights"] > 0).sum()))
    total, same, _ = counts[0.0]
    assert same == total  # no termination: every sample is evaluated once, none twice
    total, fewer, composited = counts[1e-4]
    # Compaction evaluates every sample the single pass composites, and skips most of the rest.
    assert composited <= fewer < 0.7 * total


def test_sigma_mode_and_sample_cap():
    grid = blob_grid()
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, dt_min=1 / 64,
                                      max_samples_per_ray=11)
    marcher = OccupancyGridRaymarcher(density_mode="sigma", t_thresh=1e-3)
    ref = single_pass(cameras(), BlobField(scale=8.0, mode="sigma"), sampler, marcher)
    field = BlobField(scale=8.0, mode="sigma")
    img = render_compacted(cameras(), field, sampler, marcher, max_steps_per_iter=3)
    torch.testing.assert_close(img, ref, atol=1e-5, rtol=0)
    assert field.samples <= 11 * W * H * 2
    # The cap matters: without it the image differs.
    uncapped = render_compacted(cameras(), field, sampler, marcher, max_samples_per_ray=10**6)
    assert (uncapped - img).abs().max() > 1e-3


def test_float64_compositing_matches_to_rounding():
    """A float64 field: both paths composite in float64 with the same arithmetic and order."""
    grid = blob_grid()
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, dt_min=1 / 64)
    marcher = OccupancyGridRaymarcher(t_thresh=1e-4)

    def field64(ray_bundle, **kwargs):  # float64 throughout: no batch-size-dependent rounding
        b = ray_bundle
        o, d = b.origins.double().reshape(-1, 3)[b.ray_indices], b.directions.double().reshape(-1, 3)[b.ray_indices]
        t0, t1 = b.t_starts.double(), b.t_ends.double()
        x = o + 0.5 * (t0 + t1)[:, None] * d
        alphas = 1.0 - torch.exp(-blob_sigma(x) * (t1 - t0) * d.norm(dim=-1))
        return alphas[:, None], torch.sigmoid(3.0 * x + d)

    ref = single_pass(cameras(), field64, sampler, marcher)
    img = render_compacted(cameras(), field64, sampler, marcher)
    assert img.dtype == ref.dtype == torch.float64
    torch.testing.assert_close(img, ref, atol=1e-12, rtol=0)


def test_chunked_equals_single_pass():
    grid = blob_grid()
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, dt_min=1 / 64)
    marcher = OccupancyGridRaymarcher(background=1.0, return_aux=True)
    ref, ref_aux = single_pass(cameras(), BlobField(), sampler, marcher)
    field = BlobField()
    img, aux = render_chunked(cameras(), field, sampler, marcher, chunk=997)
    assert field.calls == -(-field.samples // 997) > 3
    torch.testing.assert_close(img, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(aux["depth"], ref_aux["depth"], atol=1e-6, rtol=0)


def test_rays_that_miss_and_bad_input():
    grid = blob_grid()
    sampler = OccupancyGridRaysampler(image_width=W, image_height=H, occupancy_grid=grid, dt_min=1 / 64)
    cams = cameras()
    away = FoVPerspectiveCameras(R=cams.R, T=cams.T * torch.tensor([1.0, 1.0, -1.0]), fov=40.0)
    field = BlobField()
    img = render_compacted(away, field, sampler, OccupancyGridRaymarcher(background=0.5))
    assert field.samples == 0 and field.calls == 1  # called once, empty: learns C = 3
    torch.testing.assert_close(img, torch.cat([torch.full((2, H, W, 3), 0.5), torch.zeros(2, H, W, 1)], -1))
    with pytest.raises(ValueError, match="mode='packed'"):
        render_compacted(cams, field, OccupancyGridRaysampler(image_width=W, image_height=H, mode="dense"))
    with pytest.raises(ValueError, match="densities \\(S, 1\\) and features \\(S, C\\)"):
        render_compacted(cams, lambda ray_bundle, **kw: (ray_bundle.t_starts, ray_bundle.t_starts), sampler)
    with pytest.raises(ValueError, match="max_steps_per_iter"):
        render_compacted(cams, field, sampler, max_steps_per_iter=0)
    with pytest.raises(ValueError, match="chunk"):
        render_chunked(cams, field, sampler, chunk=0)


def test_audio_radiance_field_matches_single_pass():
    torch.manual_seed(0)
    field = AudioRadianceField(audio_type=(16, 8), num_frames=2, log2_hashmap_size=12)
    with torch.no_grad():
        field.sigma_net[-1].weight[0] *= 100.0  # a dense untrained field, so rays terminate
    grid = OccupancyGrid(aabb=RADNERF_AABB, resolution=16)  # fresh: every cell occupied
    sampler = OccupancyGridRaysampler(image_width=12, image_height=10, min_depth=1.0, max_depth=5.0,
                                      occupancy_grid=grid)
    marcher = OccupancyGridRaymarcher(background=1.0, t_thresh=1e-2, return_aux=True)
    R, T = look_at_view_transform(dist=3.0, elev=[10.0, -20.0], azim=[0.0, 35.0])
    cams = FoVPerspectiveCameras(R=R, T=T, fov=30.0)
    kw = dict(audio=torch.randn(2, 8, 16, 8), frame_index=torch.tensor([0, 1]), eye=torch.tensor([0.1, 0.4]))
    with torch.no_grad():
        ref, ref_aux = single_pass(cams, field, sampler, marcher, **kw)
    img, aux = render_compacted(cams, field, sampler, marcher, **kw)
    assert ref_aux["opacity"].max() > 0.99 and ref_aux["weights"].numel() > aux["samples"] > 0
    # A real network: its float32 outputs round differently on differently sized batches, so a
    # ray whose T lands within rounding of t_thresh may stop one sample apart.
    torch.testing.assert_close(img, ref, atol=1e-5 + marcher.t_thresh, rtol=0)
    assert (img - ref).abs().gt(1e-5).float().mean() < 0.01
    # Per-camera audio / frame codes reach the right rays: swapping them changes the image.
    swapped = render_compacted(cams, field, sampler, marcher, audio=kw["audio"].flip(0),
                               frame_index=torch.tensor([1, 0]), eye=kw["eye"])[0]
    assert (swapped - img).abs().max() > 1e-3
