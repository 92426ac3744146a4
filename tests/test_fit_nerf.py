"""HarmonicNeRFField on dense and packed bundles, and examples/fit_nerf.py end to end (tiny)."""

import importlib.util
import json
import os

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                NDCMultinomialRaysampler, RayBundle, look_at_view_transform)

from pt3d_radnerf.models import HarmonicNeRFField
from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cameras():
    R, T = look_at_view_transform(dist=2.5, elev=20.0, azim=torch.tensor([30.0, 150.0]))
    return FoVPerspectiveCameras(R=R, T=T, fov=45.0)


def test_field_dense_and_packed_give_the_same_samples():
    """The packed march of a fully occupied grid at a fixed step, and the dense bundle whose
    lengths are the packed midpoints, put samples at the same points: the field must agree."""
    torch.manual_seed(0)
    # 6 harmonics: with the tutorial's 60 the top float32 features are not continuous in the
    # point, so rounding differences between the two bundle kinds would dominate.
    field = HarmonicNeRFField(n_harmonic_functions=6, n_hidden=32, n_layers=2)
    with torch.no_grad():
        field.density_layer[0].bias.fill_(0.5)  # non-trivial opacities
    grid = OccupancyGrid(resolution=16, step_size=0.1)  # all cells unknown: occupied
    sampler = OccupancyGridRaysampler(image_width=6, image_height=5, min_depth=1.0, max_depth=4.0, occupancy_grid=grid)
    packed = sampler(_cameras())
    counts = packed.packed_info[:, 1]
    hit = counts > 0
    assert int(hit.sum()) > 10 and int(counts[hit].min()) > 3
    # Rays with the same sample count form one dense bundle (their midpoints as lengths).
    n = int(counts[hit].max())
    rays = (counts == n).nonzero()[:, 0]
    starts = packed.packed_info[rays, 0]
    idx = starts[:, None] + torch.arange(n)
    mids = packed.t_mids()[idx]
    o, d = packed.origins.reshape(-1, 3)[rays], packed.directions.reshape(-1, 3)[rays]
    dense = RayBundle(origins=o, directions=d, lengths=mids, xys=packed.xys.reshape(-1, 2)[rays])
    alpha_d, rgb_d = field(dense)
    alpha_p, rgb_p = field(packed)
    assert alpha_d.shape == (len(rays), n, 1) and rgb_d.shape == (len(rays), n, 3)
    assert alpha_p.shape == (packed.n_samples,) and rgb_p.shape == (packed.n_samples, 3)
    torch.testing.assert_close(rgb_p[idx], rgb_d, atol=1e-5, rtol=1e-5)
    # Opacities: a dense sample's interval is the distance to the next midpoint, a packed one's
    # its own step; equal except at the last two samples of a ray, whose midpoints move when the
    # march clips the last interval at the box.
    torch.testing.assert_close(alpha_p[idx][:, :-2], alpha_d[:, :-2, 0], atol=1e-5, rtol=1e-4)
    # density(): the sigma behind forward's opacities.
    sigma = field.density(packed.sample_points())
    torch.testing.assert_close(alpha_p, 1 - torch.exp(-sigma * packed.deltas()), atol=1e-6, rtol=1e-5)
    assert bool((alpha_p > 0.01).all()) and bool((alpha_p < 1).all())


def test_field_renders_with_stock_and_swapped_components():
    torch.manual_seed(0)
    field = HarmonicNeRFField(n_harmonic_functions=6, n_hidden=32, n_layers=2)
    cams = _cameras()
    stock = ImplicitRenderer(NDCMultinomialRaysampler(image_width=6, image_height=5, n_pts_per_ray=24,
                                                      min_depth=1.0, max_depth=4.0), EmissionAbsorptionRaymarcher())
    images, _ = stock(cameras=cams, volumetric_function=field)
    grid = OccupancyGrid(resolution=16)
    grid.update(field.density, 0)  # the field's own density drives the grid
    swapped = ImplicitRenderer(OccupancyGridRaysampler(image_width=6, image_height=5, n_pts_per_ray=24,
                                                       min_depth=1.0, max_depth=4.0, occupancy_grid=grid,
                                                       mode="dense"), OccupancyGridRaymarcher(t_thresh=0.0))
    swapped_images, _ = swapped(cameras=cams, volumetric_function=field)
    assert images.shape == swapped_images.shape == (2, 5, 6, 4)
    with pytest.raises(ValueError, match=r"points must be shaped \(\.\.\., 3\)"):
        field.density(torch.zeros(4, 2))


def _load_example():
    spec = importlib.util.spec_from_file_location("fit_nerf", os.path.join(ROOT, "examples", "fit_nerf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_images_at_xys_matches_pixel_centres():
    from pt3d_radnerf.renderer import ndc_grid_pixels
    from pt3d_radnerf.training.nerf import sample_images_at_xys

    images = torch.rand(2, 5, 7, 3)
    sampler = OccupancyGridRaysampler(image_width=7, image_height=5, min_depth=1.0, max_depth=2.0)
    xys = sampler(_cameras()).xys.reshape(2, -1, 2)  # PyTorch3D's pixel-centre NDC grid
    row, col = ndc_grid_pixels(xys, 7, 5)
    want = images[torch.arange(2)[:, None], row, col]
    torch.testing.assert_close(sample_images_at_xys(images, xys), want, atol=1e-5, rtol=0)


def test_fit_nerf_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PT3D_RADNERF_CACHE", str(tmp_path / "cache"))
    fit_nerf = _load_example()
    ws = tmp_path / "ws"
    metrics = fit_nerf.main(["--views", "8", "--size", "16", "--seconds", "1.5", "--workspace", str(ws),
                             "--n-harmonic", "4", "--hidden", "16", "--layers", "1", "--rays", "32",
                             "--n-pts", "8", "--batch-cameras", "2", "--evals", "2", "--eval-views", "1",
                             "--turntable-frames", "3", "--grid-resolution", "16", "--cells-per-update", "1024",
                             "--threads", "2"])
    assert {"metrics.json", "psnr_curve.png", "turntable.mp4"} <= set(os.listdir(ws))
    assert not [n for n in os.listdir(ws) if n.startswith(".pt3d-tmp-")]
    with open(ws / "metrics.json") as f:
        saved = json.load(f)
    for name in ("stock", "swapped"):
        m = saved[name]
        assert m["steps"] >= 1 and m["train_seconds"] >= 1.5 and m["rays_per_second"] > 0
        assert m["render_ms_per_frame"] > 0 and 0 < m["psnr"] < 60
        assert len(m["curve"]) == 3 and m["curve"][0][0] == 0.0
    assert 0 < saved["swapped"]["grid_update_share"] < 1 and saved["stock"]["grid_update_share"] == 0
    # Same seed, same initial weights: the untrained curves start equal.
    assert saved["stock"]["curve"][0][1] == pytest.approx(saved["swapped"]["curve"][0][1], abs=0.05)
    assert saved["comparison"]["psnr_gain_db"] == pytest.approx(saved["swapped"]["psnr"] - saved["stock"]["psnr"])
    assert metrics["stock"]["steps"] == saved["stock"]["steps"]
    assert os.path.getsize(ws / "turntable.mp4") > 1000 and os.path.getsize(ws / "psnr_curve.png") > 1000


def test_train_side_by_side_alternates_and_evaluates_at_checkpoints():
    from types import SimpleNamespace

    from pt3d_radnerf.training.nerf import train_side_by_side

    order, evals = [], []

    class Fake:
        def __init__(self, name, dt):
            self.name, self.dt, self.seconds, self.steps = name, dt, 0.0, 0
            self.config = SimpleNamespace(seconds=1.0)

        def step(self, scene, background):
            running = [q for q in pipelines.values() if q.seconds < 1.0]
            assert self.seconds == min(q.seconds for q in running)  # the one behind steps next
            order.append(self.name)
            self.seconds += self.dt
            self.steps += 1

    pipelines = {"stock": Fake("stock", 0.375), "swapped": Fake("swapped", 0.125)}  # exact in binary
    train_side_by_side(pipelines, None, None, [0.0, 0.5, 1.0], lambda p: evals.append((p.name, p.seconds)))
    assert order.count("stock") == 3 and order.count("swapped") == 8
    # t = 0, then after the first step at or past 0.5 s and at or past 1.0 s
    assert [t for n, t in evals if n == "stock"] == [0.0, 0.75, 1.125]
    assert [t for n, t in evals if n == "swapped"] == [0.0, 0.5, 1.0]
    # A step past several checkpoints evaluates once.
    evals.clear()
    pipelines = {"stock": Fake("stock", 0.375), "swapped": Fake("swapped", 0.125)}
    train_side_by_side(pipelines, None, None, [0.0, 0.1, 0.2, 0.3, 1.0], lambda p: evals.append((p.name, p.seconds)))
    assert [t for n, t in evals if n == "stock"] == [0.0, 0.375, 1.125]
    assert [t for n, t in evals if n == "swapped"] == [0.0, 0.125, 0.25, 0.375, 1.0]
