"""Throughput of the foundation ops: C++ kernel vs pure-PyTorch twin, measured in one run.

    python benchmarks/bench_ops.py [--device cuda] [--write-readme]
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_rate, markdown_table, parser, publish, time_call  # noqa: E402

from pt3d_radnerf import ops  # noqa: E402
from pt3d_radnerf.ops import reference  # noqa: E402

BOX = [-1.0, -0.5, -1.0, 1.0, 0.5, 1.0]


def cases(device):
    n_rays = 1 << 20
    o = torch.randn(n_rays, 3, device=device) * 2
    d = torch.randn(n_rays, 3, device=device)
    box = torch.tensor(BOX, device=device)
    coords = torch.randint(0, 128, (128**3, 3), dtype=torch.int32, device=device)
    codes = ops.morton3d(coords)
    grid = torch.rand(128**3, device=device)
    og, dg = o[: 1 << 18].clone().requires_grad_(True), d[: 1 << 18].clone().requires_grad_(True)
    go, gd = og.detach().clone().requires_grad_(True), dg.detach().clone().requires_grad_(True)

    def fwd_bwd(fn, a, b):
        def run():
            near, far, _ = fn(a, b, box if fn is reference.near_far_from_aabb else BOX, 0.05)
            (near.sum() + far.sum()).backward()
        return run

    yield ("near_far_from_aabb (fwd)", "rays", n_rays,
           lambda: ops.near_far_from_aabb(o, d, BOX, 0.05),
           lambda: reference.near_far_from_aabb(o, d, box, 0.05))
    yield ("near_far_from_aabb (fwd+bwd)", "rays", 1 << 18,
           fwd_bwd(ops.near_far_from_aabb, og, dg), fwd_bwd(reference.near_far_from_aabb, go, gd))
    yield ("morton3d", "cells", 128**3, lambda: ops.morton3d(coords), lambda: reference.morton3d(coords))
    yield ("morton3d_invert", "cells", 128**3,
           lambda: ops.morton3d_invert(codes), lambda: reference.morton3d_invert(codes))
    yield ("packbits", "cells", 128**3,
           lambda: ops.packbits(grid, 0.5), lambda: reference.packbits(grid, 0.5))


def main():
    args = parser(__doc__).parse_args()
    rows = []
    for name, unit, n, kernel, twin in cases(args.device):
        tk = time_call(kernel, args.device)
        tr = time_call(twin, args.device)
        rows.append([name, f"{fmt_rate(n / tk)} {unit}/s", f"{fmt_rate(n / tr)} {unit}/s", f"{tr / tk:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(
        ["op", "kernel", "pure-PyTorch twin", "speed-up"], rows)
    publish("ops", args.device, table, args.write_readme)


if __name__ == "__main__":
    main()
