"""torch.library.opcheck on every registered op (schema, fake/meta kernel, autograd registration,
AOT dispatch with dynamic shapes), on small CPU inputs in float32 and float64."""

import pytest
import torch

from pt3d_radnerf import ops  # noqa: F401  (registers the fake and autograd kernels)

lib = torch.ops.pt3d_radnerf
FLOATS = [torch.float32, torch.float64]


def rays(n, dtype, grad=False):
    o = (torch.rand(n, 3, dtype=dtype) * 4 - 2).requires_grad_(grad)
    d = torch.nn.functional.normalize(torch.randn(n, 3, dtype=dtype), dim=-1).requires_grad_(grad)
    return o, d


def box(dtype):
    return torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], dtype=dtype)


def packed(counts):
    counts = torch.tensor(counts)
    return torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)


def cases():
    """(id, op, args) for every op of the library."""
    out = []
    for dt in FLOATS:
        name = str(dt).split(".")[-1]
        o, d = rays(6, dt, grad=True)
        out.append((f"near_far_from_aabb-{name}", lib.near_far_from_aabb, (o, d, box(dt), 0.1)))
        out.append((f"near_far_from_aabb_backward-{name}", lib.near_far_from_aabb_backward,
                    (torch.randn(6, dtype=dt), torch.randn(6, dtype=dt), o.detach(), d.detach(), box(dt), 0.1)))
        out.append((f"packbits-{name}", lib.packbits, (torch.rand(2, 64, dtype=dt), 0.5)))
        info = packed([3, 0, 5, 2])
        s = 10
        for sigma in (False, True):
            values = torch.rand(s, dtype=dt, requires_grad=True)
            deltas = (torch.rand(s, dtype=dt) * 0.5).requires_grad_(sigma) if sigma else torch.zeros(0, dtype=dt)
            feats = torch.rand(s, 3, dtype=dt, requires_grad=True)
            ts = torch.sort(torch.rand(s, dtype=dt)).values
            trans = torch.rand(4, dtype=dt, requires_grad=True)
            mode = "sigma" if sigma else "alpha"
            args = (values, deltas, feats, ts, info, trans, sigma, 1e-3, 1e-10)
            out.append((f"composite-{mode}-{name}", lib.composite, args))
            grads = (torch.randn(4, 3, dtype=dt), torch.randn(4, dtype=dt), torch.randn(4, dtype=dt),
                     torch.randn(4, dtype=dt))
            out.append((f"composite_backward-{mode}-{name}", lib.composite_backward,
                        grads + tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)))
        res, cascades = 8, 2
        bitfield = (torch.rand(cascades * res**3 // 8) * 256).to(torch.uint8)
        o, d = rays(5, dt)
        out.append((f"occupancy_march-{name}", lib.occupancy_march,
                    (o, d, torch.rand(5, dtype=dt) * 0.99, None, box(dt), bitfield, cascades, res, 0.0, 100.0,
                     0.05, 0.05, 0.0, -1)))
        out.append((f"occupancy_march-resume-{name}", lib.occupancy_march,
                    (o, d, None, torch.rand(5, dtype=dt), box(dt), bitfield, cascades, res, 0.0, 100.0,
                     0.02, 0.2, 0.1, 3)))
        for dim in (2, 3):
            offsets, scales = ops.grid_level_layout(dim, 2, 4, 2.0, 6)
            x = (torch.rand(7, dim, dtype=dt) * 2 - 1).requires_grad_()
            emb = (torch.randn(offsets[-1], 2, dtype=dt) * 0.1).requires_grad_()
            cfg = (offsets, scales, "hash", False, "linear", 1.0)
            out.append((f"grid_encode-{dim}d-{name}", lib.grid_encode, (x, emb) + cfg))
            for input_grad in (True, False):
                out.append((f"grid_encode_backward-{dim}d-{input_grad}-{name}", lib.grid_encode_backward,
                            (torch.randn(7, 2 * len(scales), dtype=dt), x.detach(), emb.detach()) + cfg
                            + (input_grad,)))
        dirs = torch.nn.functional.normalize(torch.randn(9, 3, dtype=dt), dim=-1).requires_grad_()
        out.append((f"sh_encode-{name}", lib.sh_encode, (dirs, 4)))
        out.append((f"sh_encode_backward-{name}", lib.sh_encode_backward,
                    (torch.randn(9, 16, dtype=dt), dirs.detach(), 4)))
    for it in (torch.int32, torch.int64):
        name = str(it).split(".")[-1]
        out.append((f"morton3d-{name}", lib.morton3d, (torch.randint(0, 1024, (7, 3), dtype=it),)))
        out.append((f"morton3d_invert-{name}", lib.morton3d_invert, (torch.randint(0, 2**30, (7,), dtype=it),)))
    return out


CASES = cases()


def test_every_op_is_covered():
    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("pt3d_radnerf::")}
    covered = {case[1]._qualified_op_name.split("::")[-1] for case in CASES}
    assert registered == covered


@pytest.mark.parametrize("op, args", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_opcheck(op, args):
    torch.library.opcheck(op, args)
