"""TorsoField: RAD-NeRF's sizes, encoding layout, gradients (float64 gradcheck through the warp),
a small fit, and the head-over-torso-over-background composite."""

import math

import pytest
import torch

from pt3d_radnerf.data import bg_coords
from pt3d_radnerf.models import FrequencyEncoder, TorsoField, composite_head_torso


def tiny_field(**kwargs):
    args = dict(num_frames=3, num_levels=2, log2_hashmap_size=6, base_resolution=2, desired_resolution=6,
                deform_hidden=16, hidden=8)
    args.update(kwargs)
    return TorsoField(**args)


def test_sizes_match_radnerf():
    field = TorsoField(num_frames=10000)
    # RAD-NeRF's logs: 4,231,701 parameters with the torso, 3,024,277 for the head alone.
    assert sum(p.numel() for p in field.parameters()) == 4231701 - 3024277
    assert field.coord_encoder.output_dim == 42 and field.pose_encoder.output_dim == 54
    assert [m.in_features for m in field.deform_net if isinstance(m, torch.nn.Linear)] == [104, 64, 64]
    assert [m.in_features for m in field.torso_net if isinstance(m, torch.nn.Linear)] == [136, 32, 32]
    alpha, rgb = field(torch.rand(2, 7, 2) * 2 - 1, torch.randn(2, 6), torch.tensor([0, 9999]))
    assert alpha.shape == (2, 7, 1) and rgb.shape == (2, 7, 3)
    assert 0 < alpha.min() and alpha.max() < 1 and 0 < rgb.min() and rgb.max() < 1
    # (N, 2) coords: the same pixels under every pose; no frame_index: code 0.
    shared, poses = torch.rand(5, 2) * 2 - 1, torch.randn(3, 6)
    a2, r2 = field(shared, poses)
    a3, r3 = field(shared[None].expand(3, -1, -1), poses, torch.zeros(3, dtype=torch.long))
    assert a2.shape == (3, 5, 1) and torch.equal(a2, a3) and torch.equal(r2, r3)
    assert not torch.equal(a2[0], a2[1])  # the pose changes the torso


def test_frequency_encoding_layout():
    enc = FrequencyEncoder(2, 3)
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    want = [0.3, -0.7]
    for k in range(3):
        f = 2.0**k
        want += [math.sin(f * 0.3), math.sin(-f * 0.7), math.cos(f * 0.3), math.cos(-f * 0.7)]
    torch.testing.assert_close(enc(x)[0], torch.tensor(want, dtype=torch.float64))


def test_warp_is_shrunk_coords_plus_offset():
    field = tiny_field()
    with torch.no_grad():
        field.deform_net[-1].weight.zero_()
    coords, poses = torch.rand(1, 9, 2) * 2 - 1, torch.randn(1, 6)
    warped, _ = field.deform(coords, poses)
    torch.testing.assert_close(warped, coords * 0.8)
    with torch.no_grad():
        field.deform_net[-1].weight.fill_(10.0)  # huge offsets are clamped to the grid's domain
    warped, _ = field.deform(coords, poses)
    assert warped.abs().max() <= 1.0 and (warped.abs() == 1.0).any()


def test_param_groups_cover_every_parameter_once():
    field = tiny_field()
    groups = field.param_groups(lr=1e-2, lr_net=1e-3)
    assert [(g["name"], g["lr"]) for g in groups] == [("grids", 1e-2), ("nets", 1e-3)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in field.parameters())
    assert groups[0]["params"] == [field.encoder.embeddings]


def test_gradients_reach_every_parameter_and_the_coordinates():
    field = tiny_field(deform_hidden=64, hidden=32)
    with torch.no_grad():
        field.encoder.embeddings.uniform_(-1.0, 1.0)
        field.deform_net[-1].weight.mul_(0.2)  # keep the warp inside the clamp
    coords = (torch.rand(2, 64, 2) * 1.6 - 0.8).requires_grad_()
    assert field.deform(coords, torch.randn(2, 6))[0].abs().max() < 1
    alpha, rgb = field(coords, torch.randn(2, 6), torch.tensor([1, 2]))
    (alpha.sum() + rgb.square().sum()).backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert field.individual_codes.grad[0].abs().sum() == 0  # only the drawn frames' codes
    assert coords.grad.abs().min() > 0


def test_gradcheck_float64_through_the_warp():
    # Inputs: coordinates, poses, the deformation net's last layer (reached only through the
    # grid's input gradient) and the grid table; everything else fixed.
    field = tiny_field().double()
    with torch.no_grad():
        field.encoder.embeddings.uniform_(-1.0, 1.0)
        field.deform_net[-1].weight.mul_(0.2)
    coords = torch.rand(2, 4, 2, dtype=torch.float64) * 1.2 - 0.6
    poses = torch.randn(2, 6, dtype=torch.float64) * 0.3
    index = torch.tensor([0, 2])
    warped, _ = field.deform(coords, poses, index)
    assert warped.abs().max() < 0.95  # inside the clamp: the check does not pass on a flat region
    names = ("deform_net.4.weight", "encoder.embeddings")
    params = dict(field.named_parameters())

    def fn(coords, poses, deform_w, table):
        out = torch.func.functional_call(field, {**params, names[0]: deform_w, names[1]: table},
                                         (coords, poses, index))
        return torch.cat(out, -1)

    inputs = (coords.requires_grad_(), poses.requires_grad_(), params[names[0]].detach().clone().requires_grad_(),
              params[names[1]].detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def synthetic_torso(height=24, width=32):
    """(H, W, 4) straight RGBA: an opaque coloured blob (shoulders) in the lower half, alpha 0 above."""
    coords = bg_coords(height, width)
    row, col = coords[..., 0], coords[..., 1]
    alpha = torch.sigmoid(12 * (row - 0.3 * col.square() + 0.1))
    rgb = torch.stack([0.5 + 0.4 * col, 0.3 + 0.2 * row, 0.6 - 0.3 * col * row], -1)
    return torch.cat([rgb, alpha[..., None]], -1), coords


def test_fit_synthetic_torso_image():
    torch.manual_seed(0)
    target, coords = synthetic_torso()
    field = TorsoField(num_frames=1, num_levels=8, log2_hashmap_size=10, desired_resolution=64)  # small: fast
    optim = torch.optim.Adam(field.param_groups(lr=1e-2, lr_net=5e-3), betas=(0.9, 0.99), eps=1e-15)
    pose = torch.tensor([[0.1, -0.2, 0.05, 0.3, 0.0, 2.8]])
    background = torch.full((3,), 0.9)
    want = target[..., :3] * target[..., 3:] + background * (1 - target[..., 3:])

    def loss_fn():
        alpha, rgb = field(coords.reshape(-1, 2), pose, torch.tensor([0]))
        pred = rgb * alpha + background * (1 - alpha)  # torso over background, as the torso stage
        return torch.mean((pred[0] - want.reshape(-1, 3)) ** 2)

    first = float(loss_fn().detach())
    for _ in range(60):
        optim.zero_grad()
        loss = loss_fn()
        loss.backward()
        optim.step()
    final = float(loss_fn().detach())
    assert final < 0.03 * first, (first, final)


def test_composite_order_is_head_over_torso_over_background():
    shape = (4, 5)
    head_opacity = torch.rand(*shape, 1)
    head_rgb = torch.rand(*shape, 3) * head_opacity  # premultiplied, as a raymarcher returns
    torso_rgb, torso_alpha, bg = torch.rand(*shape, 3), torch.rand(*shape, 1), torch.rand(*shape, 3)
    got = composite_head_torso(head_rgb, head_opacity, torso_rgb, torso_alpha, bg)
    for idx in [(0, 0), (3, 4), (2, 1)]:
        h, o, t, a, b = (v[idx] for v in (head_rgb, head_opacity, torso_rgb, torso_alpha, bg))
        torso_layer = t * a + b * (1 - a)
        torch.testing.assert_close(got[idx], h + (1 - o) * torso_layer)
    # An opaque head hides the torso; a transparent head over an opaque torso shows the torso.
    ones, zeros = torch.ones(1, 1), torch.zeros(1, 1)
    c = torch.tensor([[0.2, 0.4, 0.6]])
    torch.testing.assert_close(composite_head_torso(c, ones, torso_rgb[0, :1], ones, bg[0, :1]), c)
    torch.testing.assert_close(composite_head_torso(zeros.expand(1, 3), zeros, c, ones, bg[0, :1]), c)
    with pytest.raises(ValueError, match="head_opacity"):
        composite_head_torso(head_rgb, head_opacity[..., 0], torso_rgb, torso_alpha, bg)


def test_input_errors():
    field = tiny_field()
    with pytest.raises(ValueError, match=r"poses must be \(B, 6\)"):
        field(torch.zeros(4, 2), torch.zeros(6))
    with pytest.raises(ValueError, match="coords must be"):
        field(torch.zeros(2, 4, 2), torch.zeros(3, 6))
    with pytest.raises(ValueError, match="coords must be"):
        field(torch.zeros(4, 3), torch.zeros(1, 6))
    with pytest.raises(ValueError, match=r"frame_index must lie in \[0, 3\)"):
        field(torch.zeros(4, 2), torch.zeros(1, 6), torch.tensor([3]))
    with pytest.raises(TypeError, match="frame_index"):
        field(torch.zeros(4, 2), torch.zeros(1, 6), torch.tensor([0.0]))
    with pytest.raises(TypeError, match="coords"):
        field(torch.zeros(4, 2, dtype=torch.long), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="shrink"):
        TorsoField(num_frames=2, shrink=1.5)
    with pytest.raises(ValueError, match="num_frames"):
        TorsoField(num_frames=0)
