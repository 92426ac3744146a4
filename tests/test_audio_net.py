"""AudioNet / AudioAttNet: shapes, parameter counts from layer sizes, gradients everywhere."""

import pytest
import torch

from pt3d_radnerf.models import AudioAttNet, AudioNet


def conv_params(c_in, c_out, k=3):
    return c_in * c_out * k + c_out


def linear_params(i, o):
    return i * o + o


@pytest.mark.parametrize("dim_in, win", [(29, 16), (44, 16), (32, 16), (80, 16), (1024, 2)])
def test_audio_net_shapes_and_params(dim_in, win):
    net = AudioNet(dim_in, 64, win)
    want = (conv_params(dim_in, 32) + conv_params(32, 32) + conv_params(32, 64) + conv_params(64, 64)
            + linear_params(64, 64) + linear_params(64, 64))
    assert sum(p.numel() for p in net.parameters()) == want
    x = torch.randn(5, win, dim_in, requires_grad=True)
    out = net(x)
    assert out.shape == (5, 64)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=rf"\(B, {win}, {dim_in}\)"):
        net(torch.randn(5, win, dim_in + 1))


def test_audio_att_net():
    att = AudioAttNet(64, 8)
    want = sum(conv_params(a, b) for a, b in [(64, 16), (16, 8), (8, 4), (4, 2), (2, 1)]) + linear_params(8, 8)
    assert sum(p.numel() for p in att.parameters()) == want
    codes = torch.randn(3, 8, 64, requires_grad=True)
    out = att(codes)
    assert out.shape == (3, 64)
    assert att(codes[0]).shape == (64,)
    torch.testing.assert_close(att(codes[1]), out[1])
    # A weighted average: identical codes come back unchanged.
    same = torch.randn(64).expand(8, 64)
    torch.testing.assert_close(att(same), same[0])
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in att.parameters())
    with pytest.raises(ValueError, match=r"\(8, 64\)"):
        att(torch.randn(7, 64))


@pytest.mark.parametrize("win, dim_in", [(1, 3), (8, 7), (16, 80)])
def test_audio_net_any_window_up_to_16(win, dim_in):
    net = AudioNet(dim_in, 16, win)
    assert net(torch.randn(4, win, dim_in)).shape == (4, 16)
    assert net(torch.randn(0, win, dim_in)).shape == (0, 16)


def test_audio_net_rejects_bad_config():
    with pytest.raises(ValueError, match="win_size"):
        AudioNet(29, 64, 17)  # 4 stride-2 convs leave 2 time steps: would silently drop one
    with pytest.raises(ValueError, match="dim_in"):
        AudioNet(0)


def test_gradcheck_float64():
    # Small sizes and fast_mode (random Jacobian projections): float64 conv backward is slow on
    # CPU. Parameters are covered by the gradient-flow tests.
    cases = [(AudioNet(3, 4, 16), (1, 16, 3)), (AudioNet(4, 4, 2), (2, 2, 4)), (AudioAttNet(4, 8), (1, 8, 4))]
    for module, shape in cases:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(module.double(), (x,), fast_mode=True)


@pytest.mark.parametrize("kind", ["deepspeech", "hubert", "logmel"])
def test_attention_window_pipeline_reaches_every_parameter(kind):
    # features (N, W, C) -> attention windows (B, 8, W, C) -> AudioNet per frame -> AudioAttNet.
    from pt3d_radnerf.audio import attention_windows, feature_type

    t = feature_type(kind)
    feats = torch.randn(6, t.window, t.width)
    net, att = AudioNet(t.width, 64, t.window), AudioAttNet(64, 8)
    windows = attention_windows(feats, torch.tensor([0, 3, 5]))  # (3, 8, W, C), padded ends
    codes = net(windows.flatten(0, 1)).view(3, 8, 64)
    out = att(codes)
    assert out.shape == (3, 64)
    out.square().sum().backward()
    for module in (net, att):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
