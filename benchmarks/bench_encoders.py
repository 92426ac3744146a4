"""Throughput of the grid encoders: C++ kernel vs pure-PyTorch twin, measured in one run.

RAD-NeRF's spatial grid (3-D, 16 levels x 2, 2^16 rows, tiled, finest 2048) and ambient grid
(2-D, same sizes; its points need the input gradient too), 2^18 points each (uniform in the box:
no spatial coherence, the worst case for the table caches). fwd+bwd back-propagates a fixed
contiguous cotangent, as the MLP above the encoder hands it over in training.

    python benchmarks/bench_encoders.py [--device cuda] [--threads 2] [--write-readme] [--quick]
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_rate, markdown_table, parser, publish, time_call  # noqa: E402

from pt3d_radnerf.models import HashGridEncoder  # noqa: E402
from pt3d_radnerf.ops import reference  # noqa: E402


def cases(device, n):
    for name, dim, input_grad in (("spatial 3-D", 3, False), ("ambient 2-D (+ input grad)", 2, True)):
        enc = HashGridEncoder(dim, 16, 2, 16, 16, desired_resolution=2048, gridtype="tiled").to(device)
        x = (torch.rand(n, dim, device=device) * 2 - 1).requires_grad_(input_grad)

        def twin(points=x, e=enc):
            return reference.grid_encode(points, e.embeddings, e.offsets, e.scales, e.gridtype,
                                         e.align_corners, e.interpolation, e.bound)

        cot = torch.randn(n, enc.output_dim, device=device)

        def fwd_bwd(fn, cot=cot):
            def run():
                fn().backward(cot)
            return run

        yield f"{name} fwd", lambda e=enc, p=x: e(p), twin
        yield f"{name} fwd+bwd", fwd_bwd(lambda e=enc, p=x: e(p)), fwd_bwd(twin)


def main():
    p = parser(__doc__)
    p.add_argument("--points", type=int, default=None, help="points per call (default 2^18)")
    p.add_argument("--quick", action="store_true", help="2^14 points, shorter timing (smoke run)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.points = args.points or (1 << 14 if args.quick else 1 << 18)
    min_time = 0.05 if args.quick else 0.5
    rows = []
    for name, kernel, twin in cases(args.device, args.points):
        grad_ctx = torch.no_grad() if name.endswith("fwd") else torch.enable_grad()
        with grad_ctx:
            tk = time_call(kernel, args.device, repeats=3, min_time=min_time)
            tr = time_call(twin, args.device, repeats=3, min_time=min_time)
        rows.append([name, f"{fmt_rate(args.points / tk)} pts/s",
                     f"{fmt_rate(args.points / tr)} pts/s", f"{tr / tk:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(
        [f"grid encoder ({args.points} points)", "kernel", "pure-PyTorch twin", "speed-up"], rows)
    publish("encoders", args.device, table, args.write_readme)


if __name__ == "__main__":
    main()
