"""Compositing kernel vs its cumprod twin and PyTorch3D's EmissionAbsorptionRaymarcher."""

import pytest
import torch
from pytorch3d.renderer import EmissionAbsorptionRaymarcher

from pt3d_radnerf import ops
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda



def assert_matches_twin(run, density_mode):
    """``run(impl)`` -> (outputs, VJPs) for the kernel (ops) and the twin (reference): equal, with
    the deltas' VJP None for both in alpha mode (deltas are unused there). Returns the kernel's
    outputs."""
    (out, grads), (want, want_grads) = run(ops), run(reference)
    for x, y in zip(out, want):
        torch.testing.assert_close(x, y)
    for x, y in zip(grads, want_grads):
        if x is None or y is None:
            assert x is None and y is None and density_mode == "alpha"
            continue
        torch.testing.assert_close(x, y)
    return out


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
        feats, opacity = ops.composite_dense(a, f)[:2]
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

    assert_matches_twin(run, mode)
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
    assert out.features.shape == (0, 3) and out.transmittance.shape == (0,)
    info = torch.tensor([[0, 2], [2, 0]])
    out = ops.composite(torch.zeros(2), torch.ones(2, 3), info)
    assert out.features.abs().sum() == 0
    with pytest.raises(ValueError, match="packed_info rows"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="deltas are required"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), info, density_mode="sigma")
    with pytest.raises(ValueError, match="density_mode must be"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), info, density_mode="density")
    with pytest.raises(ValueError, match=r"transmittance must have shape \(R,\)"):
        ops.composite(torch.zeros(2), torch.zeros(2, 3), info, transmittance=torch.ones(3))
    with pytest.raises(ValueError, match=r"features must have shape \(S, C\)"):
        torch.ops.pt3d_radnerf.composite(torch.zeros(2), torch.zeros(0), torch.zeros(3, 3), torch.zeros(2), info,
                                         torch.ones(2), False, 0.0, 0.0)


@pytest.mark.parametrize("rows", [
    [[1, 2**63 - 1]],  # start + count overflows int64 (segfaulted before the overflow-free check)
    [[2**62, 2**62]],
    [[-1, 1]],
    [[0, -1]],
    [[0, 9]],
])
def test_packed_info_out_of_range_is_refused(rows):
    with pytest.raises(ValueError, match="packed_info rows must satisfy"):
        ops.composite(torch.rand(8), torch.rand(8, 3), torch.tensor(rows))


@pytest.mark.parametrize("rows", [[[0, 3], [1, 2]], [[4, 2], [0, 2]], [[0, 4], [0, 0], [2, 2]]])
def test_overlapping_or_unsorted_packed_info_is_refused(rows):
    # The backward keeps per-ray scratch in its output: rays sharing samples would be wrong.
    with pytest.raises(ValueError, match="sorted and non-overlapping"):
        ops.composite(torch.rand(8), torch.rand(8, 3), torch.tensor(rows))


def random_packed(counts, c=3, dtype=torch.float64):
    counts = torch.tensor(counts)
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    s = int(counts.sum())
    a = torch.rand(s, dtype=dtype)
    a[::5] = 1.0  # opaque samples: exact gradients and T = eps afterwards
    return info, a, torch.rand(s, c, dtype=dtype), torch.sort(torch.rand(s, dtype=dtype)).values, \
        torch.rand(s, dtype=dtype) * 0.5 + 0.05


@pytest.mark.parametrize("density_mode", ["alpha", "sigma"])
@pytest.mark.parametrize("t_thresh", [0.0, 0.3])
def test_initial_transmittance_matches_twin_forward_and_vjp(density_mode, t_thresh):
    info, a, f, t, dl = random_packed([0, 3, 1, 7, 0, 5, 12, 2], c=4)
    values = a * 3 if density_mode == "sigma" else a
    r = info.shape[0]
    t_in = torch.rand(r, dtype=torch.float64)
    t_in[1], t_in[3] = 0.0, 0.2  # a ray that carries nothing; one that starts below t_thresh
    cot = [torch.randn(r, 4, dtype=t.dtype), torch.randn(r, dtype=t.dtype),
           torch.randn(r, dtype=t.dtype), torch.randn(r, dtype=t.dtype)]

    def run(impl):
        def fn(v, d, f, tr):
            out = impl.composite(v, f, info, t, d if density_mode == "sigma" else None, density_mode,
                                 t_thresh, 1e-10, tr)
            return out[0], out[1], out[2], out[4]
        return vjp(fn, [values, dl, f, t_in], cot)

    out = assert_matches_twin(run, density_mode)
    if t_thresh > 0:
        assert out[3][3] == 0.2 and out[0][3].abs().sum() == 0  # started below: nothing composited


def test_gradcheck_with_initial_transmittance():
    info, a, f, t, dl = random_packed([2, 0, 4, 3, 6])
    tr = torch.rand(info.shape[0], dtype=torch.float64, requires_grad=True)
    sig, alpha = (a * 2).requires_grad_(), torch.rand_like(a).requires_grad_()
    dl.requires_grad_()
    f.requires_grad_()

    def differentiable(out):  # every output but the weights
        return out.features, out.opacity, out.depth, out.transmittance

    assert torch.autograd.gradcheck(
        lambda s_, d_, c_, tr_: differentiable(ops.composite(s_, c_, info, t, d_, "sigma", transmittance=tr_)),
        (sig, dl, f, tr))
    assert torch.autograd.gradcheck(
        lambda a_, c_, tr_: differentiable(ops.composite(a_, c_, info, t, eps=0.0, transmittance=tr_)),
        (alpha, f, tr))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t_thresh", [0.0, 0.05])
def test_chained_calls_equal_one_call(dtype, t_thresh):
    """Each ray's samples split over 3 calls that chain the transmittance give the one-call
    result: weights, stopping point and final transmittance bit for bit; the sums add up."""
    counts = [0, 1, 5, 9, 17, 30, 3, 11]
    info, a, f, t, _ = random_packed(counts, dtype=dtype)
    a = a * 0.5  # slow decay, so t_thresh stops rays at different pieces
    whole = ops.composite(a, f, info, t, t_thresh=t_thresh)
    gen = torch.Generator().manual_seed(5)
    cut1 = (torch.rand(len(counts), generator=gen) * (info[:, 1] + 1)).long().clamp(max=info[:, 1])
    cut2 = cut1 + (torch.rand(len(counts), generator=gen) * (info[:, 1] - cut1 + 1)).long().clamp(
        max=info[:, 1] - cut1)
    pieces = [(info[:, 0], cut1), (info[:, 0] + cut1, cut2 - cut1), (info[:, 0] + cut2, info[:, 1] - cut2)]
    trans, weights = None, torch.zeros_like(a)
    feats = opacity = depth = 0
    for start, count in pieces:
        part = ops.composite(a, f, torch.stack([start, count], -1), t, t_thresh=t_thresh, transmittance=trans)
        trans = part.transmittance
        weights = weights + part.weights  # each sample is non-zero in at most one piece
        feats, opacity, depth = feats + part.features, opacity + part.opacity, depth + part.depth
    assert torch.equal(trans, whole.transmittance)
    assert torch.equal(weights, whole.weights)
    if t_thresh > 0:  # some ray did stop before its end: the test covers stopping inside a chain
        assert bool((whole.weights[a > 0] == 0).any())
    tol = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 1e-13, "rtol": 1e-13}
    torch.testing.assert_close(feats, whole.features, **tol)
    torch.testing.assert_close(opacity, whole.opacity, **tol)
    torch.testing.assert_close(depth, whole.depth, **tol)


def test_dense_transmittance_and_named_fields():
    a, f, t = random_dense((6, 10))
    tr = torch.rand(6, dtype=a.dtype)
    got = ops.composite_dense(a, f, t, transmittance=tr, t_thresh=0.01)
    want = reference.composite_dense(a, f, t, transmittance=tr, t_thresh=0.01)
    assert got._fields == ("features", "opacity", "depth", "weights", "transmittance")
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y)


@requires_cuda
def test_cuda_matches_cpu():
    a, f, t = random_dense((300, 32), dtype=torch.float32)
    cpu = ops.composite_dense(a, f, t, t_thresh=1e-3)
    gpu = ops.composite_dense(a.cuda(), f.cuda(), t.cuda(), t_thresh=1e-3)
    for x, y in zip(cpu, gpu):
        torch.testing.assert_close(x, y.cpu())
