"""Compositing kernel vs its cumprod twin and PyTorch3D's EmissionAbsorptionRaymarcher."""

import pytest
import torch
from pytorch3d.renderer import EmissionAbsorptionRaymarcher

from pt3d_radnerf import ops
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda


def random_dense(shape, c=3, dtype=torch.float64, special=True):
    a = torch.rand(*shape, dtype=dtype)
    if special and a.numel() > 8:
        flat = a.view(-1)
        flat[::7] = 0.0  # fully transparent samples
        flat[3::11] = 1.0  # fully opaque samples: gradients must stay exact
    f = torch.rand(*shape, c, dtype=dtype)
    t = torch.sort(torch.rand(*shape, dtype=dtype) * 4, -1).values
    return a, f, t


def vjp(fn, inputs, cotangents):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    outs = fn(*inputs)
    loss = sum((o * g).sum() for o, g in zip(outs, cotangents))
    return [o.detach() for o in outs], torch.autograd.grad(loss, inputs, allow_unused=True)


@pytest.mark.parametrize("shape", [(2, 5, 6, 8), (3, 40, 16), (7, 1), (4, 9, 1)])
def test_dense_matches_pytorch3d_emission_absorption(shape):
    a, f, _ = random_dense(shape)
    ea = EmissionAbsorptionRaymarcher()

    def ours(a, f):
        feats, opacity, _, _ = ops.composite_dense(a, f)
        return (torch.cat([feats, opacity[..., None]], -1),)

    def theirs(a, f):
        return (ea(a[..., None], f),)

    g = torch.randn(*shape[:-1], 4, dtype=a.dtype)
    (out, *_), grads = vjp(ours, [a, f], [g])
    (want, *_), want_grads = vjp(theirs, [a, f], [g])
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    for x, y in zip(grads, want_grads):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["alpha", "sigma"])
@pytest.mark.parametrize("t_thresh", [0.0, 1e-2])
def test_kernel_matches_twin_forward_and_vjp(mode, t_thresh):
    a, f, t = random_dense((64, 24), c=5)
    values = a * 4 if mode == "sigma" else a
    deltas = torch.rand_like(a) * 0.5
    cot = [torch.randn(64, 5, dtype=a.dtype), torch.randn(64, dtype=a.dtype), torch.randn(64, dtype=a.dtype)]

    def run(impl):
        def fn(v, d, f):
            return impl.composite_dense(v, f, t, d if mode == "sigma" else None, mode, t_thresh)[:3]
        return vjp(fn, [values, deltas, f], cot)

    (out, grads), (want, want_grads) = run(ops), run(reference)
    for x, y in zip(out, want):
        torch.testing.assert_close(x, y)
    for x, y in zip(grads, want_grads):
        if x is None or y is None:  # deltas are unused in alpha mode, by both
            assert x is None and y is None and mode == "alpha"
            continue
        torch.testing.assert_close(x, y)
    weights = ops.composite_dense(values, f, t, deltas if mode == "sigma" else None, mode, t_thresh)[3]
    torch.testing.assert_close(weights, reference.composite_dense(values, f, t, deltas, mode, t_thresh)[3])


def test_packed_equals_dense_and_twin():
    torch.manual_seed(3)
    counts = torch.tensor([0, 3, 1, 7, 0, 5])
    starts = torch.cumsum(counts, 0) - counts
    info = torch.stack([starts, counts], -1)
    s = int(counts.sum())
    a, f, t = torch.rand(s, dtype=torch.float64), torch.rand(s, 4, dtype=torch.float64), torch.rand(s, dtype=torch.float64)
    a[2] = 1.0
    got = ops.composite(a, f, info, t)
    want = reference.composite(a, f, info, t)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y)
    # Ray 3 alone, as a dense (1, 7) problem.
    dense = ops.composite_dense(a[4:11][None], f[4:11][None], t[4:11][None])
    torch.testing.assert_close(got[0][3], dense[0][0])
    torch.testing.assert_close(got[3][4:11], dense[3][0])
    assert got[1][0] == 0 and got[1][4] == 0  # rays with no samples: nothing accumulated


def test_gradcheck_packed_float64():
    counts = torch.tensor([2, 0, 4, 3])
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    s = int(counts.sum())
    t = torch.rand(s, dtype=torch.float64)
    sig = (torch.rand(s, dtype=torch.float64) * 3).requires_grad_()
    dl = (torch.rand(s, dtype=torch.float64) * 0.5 + 0.05).requires_grad_()
    rgb = torch.rand(s, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(s, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s_, d_, c_: ops.composite(s_, c_, info, t, d_, "sigma")[:3], (sig, dl, rgb))
    assert torch.autograd.gradcheck(lambda a_, c_: ops.composite(a_, c_, info, t, eps=0.0)[:3], (alpha, rgb))


def test_early_termination_bound():
    a, f, t = random_dense((500, 64), special=False)
    a = a * 0.3
    thresh = 1e-2
    full = ops.composite_dense(a, f, t)[0]
    cut = ops.composite_dense(a, f, t, t_thresh=thresh)[0]
    diff = (full - cut).abs().max().item()
    assert 0 < diff < thresh * f.max().item()


def test_empty_and_bad_input():
    out = ops.composite(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0, 2, dtype=torch.long))
    assert out[0].shape == (0, 3)
    info = torch.tensor([[0, 2], [2, 0]])
    out = ops.composite(torch.zeros(2), torch.ones(2, 3), info)
    assert out[0].abs().sum() == 0
    with pytest.raises(ValueError, match="packed_info rows"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="deltas are required"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), info, mode="sigma")
    with pytest.raises(ValueError, match="mode must be"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), info, mode="density")
    from pt3d_radnerf import _C
    with pytest.raises(ValueError, match=r"features must have shape \(S, C\)"):
        _C.composite_forward(torch.zeros(2), torch.zeros(0), torch.zeros(3, 3), torch.zeros(2), info, False, 0.0, 0.0)


@requires_cuda
def test_cuda_matches_cpu():
    a, f, t = random_dense((300, 32), dtype=torch.float32)
    cpu = ops.composite_dense(a, f, t, t_thresh=1e-3)
    gpu = ops.composite_dense(a.cuda(), f.cuda(), t.cuda(), t_thresh=1e-3)
    for x, y in zip(cpu, gpu):
        torch.testing.assert_close(x, y.cpu())
