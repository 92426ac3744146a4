"""Compositing forward+backward: our kernel vs EmissionAbsorptionRaymarcher vs the pure-PyTorch twin.

    python benchmarks/bench_compositing.py [--device cuda] [--write-readme]
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, parser, publish, time_call  # noqa: E402

from pytorch3d.renderer import EmissionAbsorptionRaymarcher  # noqa: E402

from pt3d_radnerf import ops  # noqa: E402
from pt3d_radnerf.ops import reference  # noqa: E402


def main():
    args = parser(__doc__).parse_args()
    rows = []
    ea = EmissionAbsorptionRaymarcher()
    for n_rays, p in [(65536, 16), (65536, 64)]:
        a = torch.rand(n_rays, p, device=args.device).requires_grad_()
        f = torch.rand(n_rays, p, 3, device=args.device).requires_grad_()
        g = torch.randn(n_rays, 4, device=args.device)

        def ours():
            feats, opacity = ops.composite_dense(a, f)[:2]
            torch.autograd.backward([feats, opacity], [g[:, :3], g[:, 3]])

        def twin():
            feats, opacity = reference.composite_dense(a, f)[:2]
            torch.autograd.backward([feats, opacity], [g[:, :3], g[:, 3]])

        def stock():
            ea(a[..., None], f).backward(g)

        t_ours, t_twin, t_ea = (time_call(fn, args.device, repeats=3) for fn in (ours, twin, stock))
        rows.append([f"{n_rays} x {p}", f"{t_ours * 1e3:.1f} ms", f"{t_ea * 1e3:.1f} ms", f"{t_twin * 1e3:.1f} ms",
                     f"{t_ea / t_ours:.1f}x", f"{t_twin / t_ours:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    table = "forward + backward, float32, no early termination\n\n" + markdown_table(
        ["rays x samples", "ours", "EmissionAbsorptionRaymarcher", "pure-PyTorch twin", "vs EA", "vs twin"], rows)
    publish("compositing", args.device, table, args.write_readme)


if __name__ == "__main__":
    main()
