"""grid_encode / HashGridEncoder: kernel vs pure-PyTorch twin, gradcheck, hash layout, bad input."""

import math

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.models import HashGridEncoder
from pt3d_radnerf.ops import reference

from .conftest import requires_cuda


def small_encoder(dim, c, gridtype, interpolation, align_corners=False, dtype=torch.float32, bound=1.5):
    # Coarse levels dense, fine levels overflow the 2^7-row tables: both index paths run.
    enc = HashGridEncoder(dim, num_levels=5, level_dim=c, base_resolution=3, log2_hashmap_size=7,
                          per_level_scale=1.9, gridtype=gridtype, interpolation=interpolation,
                          align_corners=align_corners, bound=bound).to(dtype)
    with torch.no_grad():
        enc.embeddings.uniform_(-1, 1)
    return enc


def twin(enc, x):
    return reference.grid_encode(x, enc.embeddings, enc.offsets, enc.scales, enc.gridtype,
                                 enc.align_corners, enc.interpolation, enc.bound)


@pytest.mark.parametrize("gridtype", ["hash", "tiled"])
@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("c", [1, 2, 4, 8])
def test_matches_twin_forward_and_vjps(gridtype, interpolation, dim, c):
    enc = small_encoder(dim, c, gridtype, interpolation, align_corners=(c == 4))
    levels_hashed = [enc.offsets[i + 1] - enc.offsets[i] == 2**7 for i in range(enc.num_levels)]
    assert any(levels_hashed) and not all(levels_hashed)
    x = (torch.rand(200, dim) * 3.2 - 1.6).requires_grad_(True)  # some points outside the bound
    y = enc(x)
    assert y.shape == (200, enc.output_dim)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = twin(enc, x2)
    torch.testing.assert_close(y, y2, atol=1e-5, rtol=1e-5)
    cot = torch.randn_like(y)
    gx, ge = torch.autograd.grad(y, [x, enc.embeddings], cot)
    gx2, ge2 = torch.autograd.grad(y2, [x2, enc.embeddings], cot)
    # a row can collect many points (aliasing): summation-order noise above 1e-5
    torch.testing.assert_close(ge, ge2, atol=5e-5, rtol=1e-5)
    # d/dx sums level-scaled corner differences: float32 cancellation noise ~1e-4 absolute;
    # the float64 run of the same comparison is exact to round-off.
    torch.testing.assert_close(gx, gx2, atol=1e-3, rtol=1e-3)
    enc64 = enc.double()
    x64 = x.detach().double().requires_grad_(True)
    x64b = x64.detach().clone().requires_grad_(True)
    g64 = torch.autograd.grad(enc64(x64), x64, cot.double())[0]
    g64b = torch.autograd.grad(twin(enc64, x64b), x64b, cot.double())[0]
    torch.testing.assert_close(g64, g64b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
@pytest.mark.parametrize("dim", [2, 3])
def test_gradcheck_float64(interpolation, dim):
    # 3 levels (the last one hashed), float64 table.
    enc = HashGridEncoder(dim, num_levels=3, level_dim=2, base_resolution=3, log2_hashmap_size=7,
                          per_level_scale=3.0, gridtype="hash").double()
    assert enc.offsets[3] - enc.offsets[2] == 2**7
    emb = torch.rand_like(enc.embeddings).requires_grad_(True)
    # Points away from cell faces: frac(pos) in [0.1, 0.9] on every level keeps the piecewise
    # function smooth inside the finite-difference step.
    x = torch.rand(4000, dim, dtype=torch.float64) * 1.8 - 0.9
    keep = torch.ones(4000, dtype=torch.bool)
    for s in enc.scales:
        frac = torch.frac((x + 1) / 2 * s + 0.5)
        keep &= ((frac > 0.1) & (frac < 0.9)).all(-1)
    x = x[keep][:6].clone().requires_grad_(True)
    assert x.shape[0] >= 2

    def fn(points, table):
        return ops.grid_encode(points, table, enc.offsets, enc.scales, "hash", False, interpolation, 1.0)

    assert torch.autograd.gradcheck(fn, (x, emb), eps=1e-6, atol=1e-6)


def test_hash_layout_by_hand():
    # 3-D, one dense level (res 3 -> 4^3 = 64 rows) and one hashed level (scale 40 -> 42^3 > 64).
    d = 3
    offsets, scales = [0, 64, 128], [2.0, 40.0]
    table = torch.arange(128, dtype=torch.float64)[:, None]
    bound = 1.0
    for level, corner in [(0, (1, 2, 2)), (0, (2, 1, 1)), (1, (7, 30, 11)), (1, (40, 1, 23))]:
        # u such that pos = u * scale + 0.5 lands exactly on the corner: weight 1 there.
        u = torch.tensor([(c - 0.5) / scales[level] for c in corner], dtype=torch.float64)
        x = (u * 2 - 1)[None] * bound
        out = ops.grid_encode(x, table, offsets, scales, "hash", False, "linear", bound)
        if level == 0:
            want = corner[0] + 4 * corner[1] + 16 * corner[2]
        else:
            h = (corner[0] * 1) ^ (corner[1] * 2654435761) ^ (corner[2] * 805459861)
            want = 64 + (h % 2**32) % 64
        assert out[0, level].item() == pytest.approx(want, abs=1e-6)
    # "tiled" on the overflowing level: dense index x + 42 y (+ 42^2 z, dropped: stride > rows).
    corner = (7, 30, 11)
    u = torch.tensor([(c - 0.5) / 40.0 for c in corner], dtype=torch.float64)
    out = ops.grid_encode((u * 2 - 1)[None], table, offsets, scales, "tiled", False, "linear", 1.0)
    assert out[0, 1].item() == pytest.approx(64 + (7 + 42 * 30) % 64, abs=1e-6)
    del d


def test_layout_matches_radnerf_sizes():
    enc = HashGridEncoder(3, 16, 2, 16, 16, desired_resolution=2048, gridtype="tiled")
    assert enc.per_level_scale == pytest.approx(2 ** (math.log2(2048 / 16) / 15))
    sizes = [enc.offsets[i + 1] - enc.offsets[i] for i in range(16)]
    assert sizes[0] == math.ceil(17**3 / 8) * 8 and sizes[-1] == 2**16
    assert enc.output_dim == 32 and enc.embeddings.abs().max() <= 1e-4
    assert "tiled" in repr(enc)


def test_out_of_bound_points_get_zero_features_and_grads():
    enc = small_encoder(3, 2, "hash", "linear")
    x = torch.tensor([[1.6, 0.0, 0.0], [0.0, -1.51, 0.2], [1.5, -1.5, 0.0]], requires_grad=True)
    y = enc(x)
    assert (y[:2] == 0).all() and (y[2] != 0).any()  # the bound itself is inside
    gx, ge = torch.autograd.grad(y[:2].sum(), [x, enc.embeddings])
    assert (gx == 0).all() and (ge == 0).all()


def test_empty_and_determinism():
    enc = small_encoder(2, 2, "tiled", "linear")
    assert enc(torch.zeros(0, 2)).shape == (0, enc.output_dim)
    x = torch.rand(4000, 2) * 2 - 1
    grads = [torch.autograd.grad(enc(x).square().sum(), enc.embeddings)[0] for _ in range(2)]
    assert torch.equal(grads[0], grads[1])


def test_bad_inputs():
    enc = small_encoder(3, 2, "hash", "linear")
    with pytest.raises(ValueError, match="x"):
        enc(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        enc(torch.tensor([[0.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="gridtype"):
        HashGridEncoder(3, gridtype="dense")
    with pytest.raises(ValueError, match="level_dim"):
        HashGridEncoder(3, level_dim=3)
    with pytest.raises(ValueError, match="input_dim"):
        HashGridEncoder(4)
    table = torch.zeros(16, 2)
    with pytest.raises(ValueError, match="inputs"):
        ops.grid_encode(torch.zeros(3, 4), table, [0, 16], [4.0])
    with pytest.raises(ValueError, match="embeddings"):
        ops.grid_encode(torch.zeros(3, 3), torch.zeros(16, 3), [0, 16], [4.0])
    with pytest.raises(ValueError, match="offsets"):
        ops.grid_encode(torch.zeros(3, 3), table, [0, 8], [4.0])
    with pytest.raises(TypeError, match="embeddings"):
        ops.grid_encode(torch.zeros(3, 3), table.double(), [0, 16], [4.0])
    with pytest.raises(ValueError, match="interpolation"):
        ops.grid_encode(torch.zeros(3, 3), table, [0, 16], [4.0], interpolation="cubic")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_cpu(dtype):
    enc = small_encoder(3, 2, "hash", "smoothstep")
    x = (torch.rand(5000, 3) * 3 - 1.5).requires_grad_(True)
    y = enc(x)
    cot = torch.randn_like(y)
    gx, ge = torch.autograd.grad(y, [x, enc.embeddings], cot)
    enc_c = enc.cuda().to(dtype)
    xc = x.detach().cuda().requires_grad_(True)
    yc = enc_c(xc)
    gxc, gec = torch.autograd.grad(yc, [xc, enc_c.embeddings], cot.cuda().to(dtype))
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(yc.float().cpu(), y, atol=tol, rtol=tol)
    torch.testing.assert_close(gec.float().cpu(), ge, atol=tol * 10, rtol=tol)
    torch.testing.assert_close(gxc.cpu(), gx, atol=tol * 100, rtol=tol * 10)
