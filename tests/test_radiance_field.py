"""AudioRadianceField: RAD-NeRF sizes, both renderer pipelines, gradients to every group, bad input."""

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, look_at_view_transform)

from pt3d_radnerf.models import AudioRadianceField, trunc_exp
from pt3d_radnerf.renderer import OccupancyGridRaymarcher, OccupancyGridRaysampler


@pytest.fixture(scope="module")
def field():
    torch.manual_seed(0)
    return AudioRadianceField("deepspeech", num_frames=50, grid_resolution=32)


def cameras():
    R, T = look_at_view_transform(dist=3.0, elev=torch.tensor([10.0, 20.0]), azim=torch.tensor([0.0, 30.0]))
    return FoVPerspectiveCameras(R=R, T=T, fov=30.0)


def test_radnerf_sizes(field):
    n = sum(p.numel() for p in field.parameters())
    print(f"AudioRadianceField parameters: {n:,}")
    # Grids: 903,480 x 2 (3-D) + the 2-D ambient grid; RAD-NeRF's head model has 3,024,277.
    assert 2.9e6 < n < 3.1e6
    assert field.encoder.output_dim == 32 and field.encoder_ambient.output_dim == 32
    assert field.encoder_dir.output_dim == 16


PIPELINES = {
    "ours": lambda: (OccupancyGridRaysampler(image_width=16, image_height=16, n_rays_per_image=48,
                                             min_depth=1.0, max_depth=5.0), OccupancyGridRaymarcher(background=1.0)),
    "stock": lambda: (MonteCarloRaysampler(-1, 1, -1, 1, 48, 24, 1.0, 5.0), EmissionAbsorptionRaymarcher()),
}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_forward_backward_reaches_every_parameter(field, pipeline):
    raysampler, raymarcher = PIPELINES[pipeline]()
    field.zero_grad()
    audio = torch.randn(2, 8, 16, 29)
    images, _ = ImplicitRenderer(raysampler, raymarcher)(
        cameras=cameras(), volumetric_function=field, audio=audio, frame_index=torch.tensor([3, 7]),
        eye=torch.tensor([0.2, 0.3]))
    assert images.shape[-1] == 4 and torch.isfinite(images).all()
    (images.square().sum() + field.last_aux["ambient"].abs().sum()).backward()
    for group in field.param_groups():
        for p in group["params"]:
            assert p.grad is not None and p.grad.abs().sum() > 0, group["name"]
    # Audio reaches density only through the 2-D grid's input gradient: the audio nets train.
    assert field.audio_net.encoder_conv[0].weight.grad.abs().sum() > 0
    assert field.ambient_net[0].weight.grad.abs().sum() > 0


def test_audio_changes_density(field):
    pts = (torch.rand(256, 3) - 0.5) * torch.tensor([1.6, 0.8, 1.6])
    with torch.no_grad():
        a = field.density(pts, audio=torch.randn(8, 16, 29))
        b = field.density(pts, audio=torch.randn(8, 16, 29))
        silent = field.density(pts, audio=None)
    assert a.shape == (256,) and (a >= 0).all()
    assert not torch.equal(a, b) and torch.isfinite(silent).all()


def test_bad_input(field):
    bundle_cams = cameras()
    rs = MonteCarloRaysampler(-1, 1, -1, 1, 8, 4, 1.0, 5.0)
    renderer = ImplicitRenderer(rs, EmissionAbsorptionRaymarcher())
    with pytest.raises(ValueError, match=r"'deepspeech' features.*C = 29"):
        renderer(cameras=bundle_cams, volumetric_function=field, audio=torch.randn(2, 8, 16, 44))
    with pytest.raises(ValueError, match=r"frame_index must lie in \[0, 50\)"):
        renderer(cameras=bundle_cams, volumetric_function=field, frame_index=torch.tensor([0, 50]))
    with pytest.raises(ValueError, match="one value per camera"):
        renderer(cameras=bundle_cams, volumetric_function=field, eye=torch.tensor([0.1, 0.2, 0.3]))
    # No audio at all is defined: silence (a zero code).
    images, _ = renderer(cameras=bundle_cams, volumetric_function=field)
    assert torch.isfinite(images).all()


def test_trunc_exp_clamps_its_gradient():
    x = torch.tensor([0.0, 10.0, 30.0], dtype=torch.float64, requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([0.0, 10.0, 15.0], dtype=torch.float64)))


def test_ambient_split_first_layer_matches_concatenation(field):
    # _ambient applies the audio half of ambient_net's first layer once per camera; the
    # reference is RAD-NeRF's formula on the concatenated per-point input.
    torch.manual_seed(1)
    enc_x = torch.randn(40, field.encoder.output_dim)
    per_camera = torch.randn(3, field.dim_aud)
    cam = torch.randint(0, 3, (40,))
    with torch.no_grad():
        reference = torch.tanh(field.ambient_net(torch.cat([enc_x, per_camera[cam]], -1)))
        torch.testing.assert_close(field._ambient(enc_x, per_camera, cam), reference, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(field._ambient(enc_x, per_camera[cam], None), reference, rtol=1e-5, atol=1e-6)
        shared = torch.tanh(field.ambient_net(torch.cat([enc_x, per_camera[:1].expand(40, -1)], -1)))
        torch.testing.assert_close(field._ambient(enc_x, per_camera[:1], cam), shared, rtol=1e-5, atol=1e-6)


def test_precomputed_audio_code_equals_audio(field):
    raysampler = OccupancyGridRaysampler(image_width=16, image_height=16, n_rays_per_image=48,
                                         min_depth=1.0, max_depth=5.0)
    torch.manual_seed(2)
    bundle = raysampler(cameras=cameras(), volumetric_function=field)
    audio = torch.randn(2, 8, 16, 29)
    kwargs = dict(frame_index=torch.tensor([3, 7]), eye=torch.tensor([0.2, 0.3]))
    with torch.no_grad():
        a_alpha, a_rgb = field(bundle, audio=audio, **kwargs)
        c_alpha, c_rgb = field(bundle, audio_code=field.encode_audio(audio), **kwargs)
    assert torch.equal(a_alpha, c_alpha) and torch.equal(a_rgb, c_rgb)
    with pytest.raises(ValueError, match=r"audio_code must have shape \(B, 64\)"):
        field(bundle, audio_code=torch.zeros(2, 63), **kwargs)
