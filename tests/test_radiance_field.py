"""AudioRadianceField: RAD-NeRF sizes, both renderer pipelines, gradients to every group, aux_out,
per-camera density, bad input and constructor validation."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                MonteCarloRaysampler, look_at_view_transform)

from pt3d_radnerf.models import RADNERF_AABB, AudioRadianceField, ray_points, sample_camera_index, trunc_exp
from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler
from pt3d_radnerf.renderer.ray_bundle import pack_info


@pytest.fixture(scope="module")
def field():
    torch.manual_seed(0)
    return AudioRadianceField("deepspeech", num_frames=50)


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


def packed_raysampler(field, n_rays=48):
    """Our packed raysampler through a fully occupied grid over the field's head box."""
    return OccupancyGridRaysampler(image_width=16, image_height=16, n_rays_per_image=n_rays, min_depth=1.0,
                                   max_depth=5.0, occupancy_grid=OccupancyGrid(aabb=field.aabb, resolution=32))


PIPELINES = {
    "ours": lambda field: (packed_raysampler(field), OccupancyGridRaymarcher(background=1.0)),
    "stock": lambda field: (MonteCarloRaysampler(-1, 1, -1, 1, 48, 24, 1.0, 5.0), EmissionAbsorptionRaymarcher()),
}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_forward_backward_reaches_every_parameter(field, pipeline):
    raysampler, raymarcher = PIPELINES[pipeline](field)
    field.zero_grad()
    audio = torch.randn(2, 8, 16, 29)
    aux = {}
    images, _ = ImplicitRenderer(raysampler, raymarcher)(
        cameras=cameras(), volumetric_function=field, audio=audio, frame_index=torch.tensor([3, 7]),
        eye=torch.tensor([0.2, 0.3]), aux_out=aux)
    assert images.shape[-1] == 4 and torch.isfinite(images).all()
    assert len(aux["ambient"]) == 1 and aux["ambient"][0].shape[-1] == 2
    (images.square().sum() + aux["ambient"][0].abs().sum()).backward()
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
    torch.manual_seed(2)
    bundle = packed_raysampler(field)(cameras=cameras())
    audio = torch.randn(2, 8, 16, 29)
    kwargs = dict(frame_index=torch.tensor([3, 7]), eye=torch.tensor([0.2, 0.3]))
    with torch.no_grad():
        a_alpha, a_rgb = field(bundle, audio=audio, **kwargs)
        c_alpha, c_rgb = field(bundle, audio_code=field.encode_audio(audio), **kwargs)
    assert torch.equal(a_alpha, c_alpha) and torch.equal(a_rgb, c_rgb)
    with pytest.raises(ValueError, match=r"audio_code must have shape \(B, 64\)"):
        field(bundle, audio_code=torch.zeros(2, 63), **kwargs)
    with pytest.raises(ValueError, match="audio or its precomputed audio_code, not both"):
        field(bundle, audio=audio, audio_code=field.encode_audio(audio), **kwargs)


def test_field_owns_no_grid_and_exposes_its_box(field):
    assert field.aabb == RADNERF_AABB and all(type(v) is float for v in field.aabb)
    assert not hasattr(field, "occupancy_grid") and not hasattr(field, "last_aux")
    assert not any(k.startswith("occupancy_grid") for k in field.state_dict())
    # models does not import the renderer (the field's caller owns the grid).
    code = ("import sys, pt3d_radnerf.models\n"
            "assert not [m for m in sys.modules if m.startswith('pt3d_radnerf.renderer')], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def split(bundle, at):
    """The bundle's samples [0, at) and [at, S), as two packed bundles over the same rays."""
    def part(sl):
        idx = bundle.ray_indices[sl]
        return dataclasses.replace(bundle, ray_indices=idx, t_starts=bundle.t_starts[sl], t_ends=bundle.t_ends[sl],
                                   packed_info=pack_info(idx, bundle.n_rays))
    return part(slice(0, at)), part(slice(at, None))


def test_aux_out_appends_every_call_in_sample_order(field):
    torch.manual_seed(5)
    bundle = packed_raysampler(field, n_rays=64)(cameras=cameras())
    kwargs = dict(audio=torch.randn(2, 8, 16, 29), frame_index=torch.tensor([1, 2]), eye=torch.tensor([0.2, 0.4]))
    whole, chunks = {}, {"unrelated": "kept"}
    with torch.no_grad():
        alpha, _ = field(bundle, aux_out=whole, **kwargs)
        for part in split(bundle, bundle.n_samples // 3):
            field(part, aux_out=chunks, **kwargs)
    s = bundle.n_samples
    assert [t.shape for t in whole["ambient"]] == [(s, 2)] and [t.shape for t in whole["sigma"]] == [(s,)]
    assert len(chunks["ambient"]) == len(chunks["sigma"]) == 2 and chunks["unrelated"] == "kept"
    torch.testing.assert_close(torch.cat(chunks["ambient"]), whole["ambient"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat(chunks["sigma"]), whole["sigma"][0], rtol=1e-5, atol=1e-5)
    # The reported sigma is the one behind the returned opacity.
    torch.testing.assert_close(alpha, 1 - torch.exp(-whole["sigma"][0] * ray_points(bundle).deltas))
    # Dense bundles: flat per-sample rows in the row-major order of the opacities.
    dense, aux = MonteCarloRaysampler(-1, 1, -1, 1, 8, 5, 1.0, 5.0)(cameras()), {}
    with torch.no_grad():
        alpha, _ = field(dense, aux_out=aux, **kwargs)
    deltas = ray_points(dense).deltas.reshape(-1)
    torch.testing.assert_close(alpha.reshape(-1), 1 - torch.exp(-aux["sigma"][0] * deltas))
    assert aux["ambient"][0].shape == (2 * 8 * 5, 2)
    with pytest.raises(TypeError, match="aux_out must be a dict"):
        field(dense, aux_out=[])


def test_density_takes_forwards_per_camera_conditioning(field):
    torch.manual_seed(6)
    bundle = packed_raysampler(field, n_rays=64)(cameras=cameras())
    audio, eye = torch.randn(2, 8, 16, 29), torch.tensor([0.1, 0.45])
    aux = {}
    with torch.no_grad():
        field(bundle, audio=audio, eye=eye, frame_index=torch.tensor([4, 9]), aux_out=aux)
        pts, cam = ray_points(bundle).points, sample_camera_index(bundle)
        sigma = field.density(pts, audio=audio, eye=eye, camera_index=cam, frame_index=torch.tensor([4, 9]))
        code = field.density(pts, audio_code=field.encode_audio(audio), eye=eye, camera_index=cam)
        per_camera = [field.density(pts[cam == i], audio=audio[i:i + 1], eye=float(eye[i])) for i in range(2)]
        swapped = field.density(pts[cam == 0], audio=audio[1:], eye=float(eye[1]))
    assert set(cam.tolist()) == {0, 1}
    torch.testing.assert_close(sigma, aux["sigma"][0], rtol=1e-5, atol=1e-5)
    assert torch.equal(code, sigma)
    for i in range(2):
        torch.testing.assert_close(per_camera[i], sigma[cam == i], rtol=1e-5, atol=1e-5)
    assert (swapped - sigma[cam == 0]).abs().max() > 1e-4  # the conditioning matters
    with pytest.raises(ValueError, match=r"camera_index must be an integer tensor of shape \(%d,\)" % len(pts)):
        field.density(pts, audio=audio)
    with pytest.raises(ValueError, match=r"camera_index must lie in \[0, 2\)"):
        field.density(pts, eye=eye, camera_index=cam + 1)
    with pytest.raises(ValueError, match="audio is given for 2 cameras but eye for 3"):
        field.density(pts, audio=audio, eye=torch.tensor([0.1, 0.2, 0.3]), camera_index=cam)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\)"):
        field.density(pts[:, :2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_eye_and_audio_are_refused_by_name(field, bad):
    bundle = MonteCarloRaysampler(-1, 1, -1, 1, 8, 4, 1.0, 5.0)(cameras())
    pts = torch.rand(10, 3) - 0.5
    with pytest.raises(ValueError, match="eye contains NaN or Inf"):
        field(bundle, eye=torch.tensor([0.2, bad]))
    with pytest.raises(ValueError, match="eye contains NaN or Inf"):
        field.density(pts, eye=bad)
    audio = torch.randn(2, 8, 16, 29)
    audio[1, 3, 5, 7] = bad
    with pytest.raises(ValueError, match="audio contains NaN or Inf"):
        field(bundle, audio=audio)
    with pytest.raises(ValueError, match="audio contains NaN or Inf"):
        field.density(pts, audio=audio, camera_index=torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="audio_code contains NaN or Inf"):
        field(bundle, audio_code=torch.full((2, 64), bad))


def test_encode_audio_checks_the_attention_frame_count(field):
    with pytest.raises(ValueError, match=r"audio has shape \(2, 7, 16, 29\).*\(B, 8, W, C\) = \(B, 8, 16, 29\)"):
        field.encode_audio(torch.randn(2, 7, 16, 29))
    with pytest.raises(ValueError, match=r"audio has shape \(9, 16, 29\)"):
        field.encode_audio(torch.randn(9, 16, 29))
    assert field.encode_audio(torch.randn(8, 16, 29)).shape == (1, 64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(audio_type="mp3"), "unknown audio feature type"),
    (dict(audio_type=(17, 8)), r"audio_type window must be an int in \[1, 16\]"),
    (dict(audio_type=(16, 0)), "audio_type width must be an int >= 1"),
    (dict(audio_type=(16,)), "audio_type must be a feature type name"),
    (dict(num_frames=0), "num_frames must be an int >= 1, got 0"),
    (dict(num_frames=2.0), "num_frames must be an int"),
    (dict(num_frames=True), "num_frames must be an int"),
    (dict(aabb=(0, 0, 0, 1, 1)), "aabb must be 6 numbers"),
    (dict(aabb="-1 -1 -1 1 1 1"), "aabb must be 6 numbers"),
    (dict(aabb=(0, 0, 0, 1, 1, 0)), "aabb needs min < max"),
    (dict(aabb=(0, 0, 0, 1, 1, float("nan"))), "aabb must be a finite number"),
    (dict(aabb=(-2, -0.5, -1, 1, 0.5, 1)), r"must lie inside \[-bound, bound\]\^3 with bound = 1.0"),
    (dict(bound=0), "bound must be > 0"),
    (dict(bound=float("inf")), "bound must be a finite number"),
    (dict(use_attention=1), "use_attention must be a bool"),
    (dict(dim_aud=0), "dim_aud must be an int >= 1"),
    (dict(ind_dim=-1), "ind_dim must be an int >= 1"),
    (dict(hidden=64.0), "hidden must be an int >= 1"),
    (dict(geo_feat_dim=0), "geo_feat_dim must be an int >= 1"),
    (dict(default_eye=float("nan")), "default_eye must be a finite number"),
    (dict(log2_hashmap_size=25), r"log2_hashmap_size must be an int in \[4, 24\]"),
])
def test_constructor_validates_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AudioRadianceField(**kwargs)


def test_constructor_takes_plain_values():
    f = AudioRadianceField(audio_type=[2, 7], num_frames=3, aabb=[-1, -1, -1, 1, 1, 1], bound=1, dim_aud=8,
                           ind_dim=2, hidden=16, geo_feat_dim=8, default_eye=0, log2_hashmap_size=8,
                           use_attention=False)
    assert (f.audio_window, f.audio_width, f.audio_type) == (2, 7, "custom")
    assert f.aabb == (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0) and f.bound == 1.0 and f.default_eye == 0.0
    assert f.individual_codes.shape == (3, 2) and f.encode_audio(torch.randn(4, 2, 7)).shape == (4, 8)


@pytest.mark.parametrize("per_camera", [True, False])
def test_query_without_grad_in_chunks_equals_one_piece(field, per_camera):
    """query_chunk (an inference option) cuts per-point inputs only: per-camera codes with
    camera_index, or a shared one, pass whole; the result equals one piece to GEMM rounding and
    the outputs keep their order (a ragged last piece included)."""
    torch.manual_seed(3)
    n = 1000
    points = torch.rand(n, 3) * 0.6 - 0.3
    dirs = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    code, eye = torch.randn(n, 4), torch.rand(n, 1)
    if per_camera:
        audio_code, camera_index = torch.randn(3, 64), torch.randint(0, 3, (n,))
    else:
        audio_code, camera_index = torch.randn(n, 64), None
    try:
        with torch.no_grad():
            field.query_chunk = None
            whole = field.query(points, dirs, audio_code, code, eye, camera_index)
            field.query_chunk = 96  # 10 full pieces and a ragged one
            pieces = field.query(points, dirs, audio_code, code, eye, camera_index)
        field.query_chunk = 96
        with_grad = field.query(points, dirs, audio_code, code, eye, camera_index)  # one piece: autograd
    finally:
        field.query_chunk = 4096
    for a, b, c in zip(whole, pieces, with_grad):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c.detach(), a, rtol=1e-5, atol=1e-6)
    assert with_grad[0].requires_grad
