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
