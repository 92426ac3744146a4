"""near_far_from_aabb: kernel vs pure-PyTorch twin, edge cases, gradients, bad input."""

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda

BOX = [-1.0, -0.5, -1.0, 1.0, 0.5, 1.0]  # RAD-NeRF's head box: non-cubic on purpose


def random_rays(n, dtype=torch.float32, device="cpu"):
    o = torch.randn(n, 3, dtype=dtype, device=device) * 2.0
    d = torch.randn(n, 3, dtype=dtype, device=device)
    return o, d


def assert_matches_reference(o, d, box=BOX, min_near=0.05, atol=1e-5):
    got = ops.near_far_from_aabb(o, d, box, min_near)
    want = reference.near_far_from_aabb(o, d, torch.tensor(box, dtype=o.dtype), min_near)
    torch.testing.assert_close(got[2], want[2])
    torch.testing.assert_close(got[0], want[0], atol=atol, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=atol, rtol=1e-5)
    return got


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_rays_match_reference(dtype):
    o, d = random_rays(20000, dtype)
    near, far, hit = assert_matches_reference(o, d)
    assert 0.05 < hit.float().mean() < 0.95, "test rays should both hit and miss"
    assert (far[hit] > near[hit]).all()
    # Entry (when not clamped) and exit points lie on the box surface.
    box = torch.tensor(BOX, dtype=dtype)
    entered = hit & (near > 0.05)
    for pts in (o[entered] + near[entered, None] * d[entered], o[hit] + far[hit, None] * d[hit]):
        assert (pts >= box[:3] - 1e-4).all() and (pts <= box[3:] + 1e-4).all()
        gap_to_face = torch.minimum((pts - box[:3]).abs(), (pts - box[3:]).abs()).amin(-1)
        assert (gap_to_face < 1e-4).all()


def test_edge_cases():
    o = torch.tensor(
        [
            [0.0, 0.0, -3.0],  # straight through along z, x/y directions exactly zero
            [2.0, 0.0, -3.0],  # parallel to x slab, outside it: miss
            [0.0, 0.0, 0.0],  # origin inside the box
            [0.0, 0.0, 3.0],  # box behind the ray: miss
            [0.0, 0.0, 0.0],  # zero direction: miss
            [1.0, 0.0, -3.0],  # parallel, exactly on the x = xmax face: counts as inside
            [float("nan"), 0.0, 0.0],  # NaN origin: miss, never NaN output
            [0.0, 0.0, -3.0],  # ray that starts beyond min_near only after the box
        ]
    )
    d = torch.tensor(
        [
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
            [0.3, 0.2, 1.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
        ]
    )
    near, far, hit = ops.near_far_from_aabb(o[:7], d[:7], BOX, min_near=0.0)
    assert hit.tolist() == [True, False, True, False, False, True, False]
    torch.testing.assert_close(near[0], torch.tensor(2.0))
    torch.testing.assert_close(far[0], torch.tensor(4.0))
    torch.testing.assert_close(near[2], torch.tensor(0.0))  # inside: clamped to min_near
    torch.testing.assert_close(far[2], torch.tensor(1.0))  # leaves through z = 1
    assert torch.isfinite(near).all() and torch.isfinite(far).all()
    assert (near[~hit] == 0.0).all() and (far[~hit] == 0.0).all()
    # min_near past the exit: the box is effectively behind, so a miss.
    n2, f2, h2 = ops.near_far_from_aabb(o[7:], d[7:], BOX, min_near=5.0)
    assert not h2.item() and n2.item() == 5.0 and f2.item() == 5.0
    assert_matches_reference(o, d, min_near=0.0)


def test_batch_shape_and_empty_input():
    o, d = random_rays(24)
    near, far, hit = ops.near_far_from_aabb(o.view(2, 3, 4, 3), d.view(2, 3, 4, 3), BOX)
    assert near.shape == far.shape == hit.shape == (2, 3, 4)
    e = torch.empty(0, 3)
    near, far, hit = ops.near_far_from_aabb(e, e, BOX)
    assert near.shape == (0,) and hit.dtype == torch.bool


def test_gradcheck_float64():
    torch.manual_seed(1)
    o = (torch.rand(64, 3, dtype=torch.float64) - 0.5) * 6
    d = torch.randn(64, 3, dtype=torch.float64)
    o.requires_grad_(True)
    d.requires_grad_(True)

    def near_far(o, d):
        near, far, _ = ops.near_far_from_aabb(o, d, BOX, 0.01)
        return near, far

    assert torch.autograd.gradcheck(near_far, (o, d), eps=1e-6, atol=1e-6)


def test_gradient_matches_reference_autograd():
    o, d = random_rays(2000, torch.float64)
    o.requires_grad_(True)
    d.requires_grad_(True)
    gn, gf = torch.randn(2000, dtype=torch.float64), torch.randn(2000, dtype=torch.float64)
    near, far, _ = ops.near_far_from_aabb(o, d, BOX, 0.05)
    go, gd = torch.autograd.grad((near * gn).sum() + (far * gf).sum(), (o, d))
    o2, d2 = o.detach().clone().requires_grad_(True), d.detach().clone().requires_grad_(True)
    rn, rf, _ = reference.near_far_from_aabb(o2, d2, torch.tensor(BOX, dtype=torch.float64), 0.05)
    ro, rd = torch.autograd.grad((rn * gn).sum() + (rf * gf).sum(), (o2, d2))
    torch.testing.assert_close(go, ro)
    torch.testing.assert_close(gd, rd)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(rays_o=torch.zeros(4, 2), rays_d=torch.zeros(4, 2)), ValueError, "shape"),
        (dict(rays_o=torch.zeros(4, 3), rays_d=torch.zeros(5, 3)), ValueError, "shape"),
        (dict(rays_o=torch.zeros(4, 3, dtype=torch.int32), rays_d=torch.zeros(4, 3, dtype=torch.int32)), TypeError, "rays_o must be float32 or float64"),
        (dict(rays_o=torch.zeros(4, 3), rays_d=torch.zeros(4, 3, dtype=torch.float64)), TypeError, "rays_d must have the dtype of rays_o"),
        (dict(rays_o=torch.zeros(4, 3), rays_d=torch.zeros(4, 3), aabb=[0, 0, 0, 1, 1]), ValueError, r"aabb must have shape \(6,\)"),
        (dict(rays_o=torch.zeros(4, 3), rays_d=torch.zeros(4, 3), aabb=[1, 0, 0, 0, 1, 1]), ValueError, "min <= max"),
        (dict(rays_o=[[0.0, 0.0, 0.0]], rays_d=[[0.0, 0.0, 1.0]]), TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(kwargs, err, match):
    kwargs.setdefault("aabb", BOX)
    with pytest.raises(err, match=match):
        ops.near_far_from_aabb(**kwargs)


def test_kernel_checks_name_arguments():
    op = torch.ops.pt3d_radnerf.near_far_from_aabb
    with pytest.raises(ValueError, match=r"aabb must have shape \(6,\)"):
        op(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(5), 0.0)
    with pytest.raises(ValueError, match="rays_o must be contiguous"):
        op(torch.zeros(3, 2).t(), torch.zeros(2, 3), torch.zeros(6), 0.0)
    with pytest.raises(ValueError, match="aabb must be finite with min <= max"):
        op(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 0, 0, 1, -1, 1]), 0.0)


@requires_cuda
def test_cuda_matches_cpu():
    o, d = random_rays(10000)
    cpu = ops.near_far_from_aabb(o, d, BOX, 0.05)
    gpu = ops.near_far_from_aabb(o.cuda(), d.cuda(), BOX, 0.05)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu())
