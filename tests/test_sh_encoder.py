"""sh_encode / SHEncoder: closed forms, twin, gradcheck, properties, bad input."""

import math

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.models import SHEncoder
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda


def unit_dirs(n, dtype=torch.float64):
    return torch.nn.functional.normalize(torch.randn(n, 3, dtype=dtype), dim=-1)


def test_low_degrees_match_closed_forms():
    d = unit_dirs(50)
    x, y, z = d.unbind(-1)
    pi = math.pi
    c0 = 0.5 / math.sqrt(pi)
    c1 = math.sqrt(3 / (4 * pi))
    c2 = math.sqrt(15 / (4 * pi))
    want = torch.stack([
        torch.full_like(x, c0),
        -c1 * y, c1 * z, -c1 * x,
        c2 * x * y, -c2 * y * z, math.sqrt(5 / (16 * pi)) * (3 * z * z - 1), -c2 * x * z,
        0.5 * c2 * (x * x - y * y),
        # band 3, m = -3 and m = 0 (tiny-cuda-nn signs: Condon-Shortley phase)
    ], dim=-1)
    got = ops.sh_encode(d, 3)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    got4 = ops.sh_encode(d, 4)
    torch.testing.assert_close(got4[:, :9], want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got4[:, 9], -math.sqrt(35 / (32 * pi)) * y * (3 * x * x - y * y))
    torch.testing.assert_close(got4[:, 12], math.sqrt(7 / (16 * pi)) * z * (5 * z * z - 3))


@pytest.mark.parametrize("degree", range(1, 9))
def test_matches_twin_and_vjp(degree):
    d = unit_dirs(300, torch.float32).requires_grad_(True)
    y = ops.sh_encode(d, degree)
    d2 = d.detach().clone().requires_grad_(True)
    y2 = reference.sh_encode(d2, degree)
    torch.testing.assert_close(y, y2, atol=1e-5, rtol=1e-5)
    cot = torch.randn_like(y)
    g = torch.autograd.grad(y, d, cot)[0]
    g2 = torch.autograd.grad(y2, d2, cot)[0]
    torch.testing.assert_close(g, g2, atol=1e-4, rtol=1e-4)


def test_gradcheck_float64():
    d = unit_dirs(8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ops.sh_encode(v, 8), (d,))


def test_orthonormal_and_addition_theorem():
    # Monte-Carlo orthonormality on the sphere, and sum_m Y_lm(d)^2 = (2l+1)/(4 pi).
    d = unit_dirs(200000)
    y = ops.sh_encode(d, 5)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]
    torch.testing.assert_close(gram, torch.eye(25, dtype=gram.dtype), atol=0.03, rtol=0)
    for l in range(5):
        band = y[:, l * l:(l + 1) * (l + 1)].square().sum(-1)
        torch.testing.assert_close(band, torch.full_like(band, (2 * l + 1) / (4 * math.pi)))


def test_module_and_bad_inputs():
    enc = SHEncoder(4)
    assert enc.output_dim == 16 and "degree=4" in repr(enc)
    assert enc(unit_dirs(6, torch.float32).view(2, 3, 3)).shape == (2, 3, 16)
    assert enc(torch.zeros(0, 3)).shape == (0, 16)
    with pytest.raises(ValueError, match="degree"):
        SHEncoder(9)
    with pytest.raises(ValueError, match="dirs"):
        enc(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="degree"):
        ops.sh_encode(torch.zeros(4, 3), 0)
    with pytest.raises(TypeError, match="dirs"):
        ops.sh_encode(torch.zeros(4, 3, dtype=torch.int32), 2)


@requires_cuda
def test_cuda_matches_cpu():
    d = unit_dirs(1000, torch.float32).requires_grad_(True)
    y = ops.sh_encode(d, 4)
    cot = torch.randn_like(y)
    g = torch.autograd.grad(y, d, cot)[0]
    dc = d.detach().cuda().requires_grad_(True)
    yc = ops.sh_encode(dc, 4)
    gc = torch.autograd.grad(yc, dc, cot.cuda())[0]
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gc.cpu(), g, atol=1e-5, rtol=1e-5)
