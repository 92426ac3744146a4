"""OccupancyGridRaysampler vs PyTorch3D's MonteCarloRaysampler on a scene occupying ~5% of its box.

Both draw the same number of random rays from 4 cameras; the stock sampler spaces its points at the
grid's step (2 sqrt(3) / 128) over the box's depth range, ours steps at that size through occupied
cells only. The march kernel alone is also timed with its empty-space skipping on and off
(PT3D_RADNERF_MARCH_NO_SKIP=1: every lattice step looked up; the samples are identical). Measured
in one run:

    python benchmarks/bench_sampling.py [--device cuda] [--write-readme] [--quick]
"""

import math
import os
import sys

import torch
from pytorch3d.renderer import FoVPerspectiveCameras, MonteCarloRaysampler, look_at_view_transform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_rate, markdown_table, parser, publish, time_call  # noqa: E402

from pt3d_radnerf import ops  # noqa: E402
from pt3d_radnerf.renderer import OccupancyGrid, OccupancyGridRaysampler  # noqa: E402

RADIUS = (0.05 * 8 * 3 / (4 * math.pi)) ** (1 / 3)  # ball with 5% of the [-1, 1]^3 volume
DIST = 2.5


def time_march(rays, grid, dt, dev, skip: bool, repeats: int) -> float:
    """Seconds per ops.occupancy_march call on the raysampler's rays, skipping on or off."""
    o, d = rays
    kw = dict(cascades=grid.cascades, resolution=grid.resolution, dt_min=dt)
    old = os.environ.pop("PT3D_RADNERF_MARCH_NO_SKIP", None)
    try:
        if not skip:
            os.environ["PT3D_RADNERF_MARCH_NO_SKIP"] = "1"
        return time_call(lambda: ops.occupancy_march(o, d, grid.aabb, grid.bitfield, **kw), dev, repeats=repeats)
    finally:
        os.environ.pop("PT3D_RADNERF_MARCH_NO_SKIP", None)
        if old is not None:
            os.environ["PT3D_RADNERF_MARCH_NO_SKIP"] = old


def main():
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="fewer rays and repeats (smoke run)")
    args = p.parse_args()
    dev = args.device
    torch.manual_seed(0)
    grid = OccupancyGrid(resolution=128).to(dev)
    grid.update(lambda x: (x.norm(dim=-1) < RADIUS).float() * 100.0, step=0)
    R, T = look_at_view_transform(dist=DIST, elev=[0, 20, -15, 35], azim=[0, 90, 200, 300])
    cams = FoVPerspectiveCameras(R=R, T=T, fov=50.0, device=dev)
    n_rays = 1024 if args.quick else 8192
    repeats = 1 if args.quick else 3
    dt = grid.step_size
    depth = (DIST - math.sqrt(3), DIST + math.sqrt(3))
    n_pts = int(round((depth[1] - depth[0]) / dt))
    box = dict(min_x=-1.0, max_x=1.0, min_y=-1.0, max_y=1.0, n_rays_per_image=n_rays)
    stock = MonteCarloRaysampler(n_pts_per_ray=n_pts, min_depth=depth[0], max_depth=depth[1], unit_directions=True, **box)
    ours = OccupancyGridRaysampler(occupancy_grid=grid, unit_directions=True, dt_min=dt, **box)

    n_total = n_rays * len(cams)
    b = ours(cams)
    s = stock(cams)
    pts = s.origins[..., None, :] + s.lengths[..., None] * s.directions[..., None, :]
    useful = float(grid.is_occupied(pts.reshape(-1, 3)).float().sum()) / n_total
    spr_ours, spr_stock = b.n_samples / n_total, n_pts
    t_ours = time_call(lambda: ours(cams), dev, repeats=repeats)
    t_stock = time_call(lambda: stock(cams), dev, repeats=repeats)
    rays = (b.origins.reshape(-1, 3).contiguous(), b.directions.reshape(-1, 3).contiguous())
    t_skip = time_march(rays, grid, dt, dev, skip=True, repeats=repeats)
    t_every = time_march(rays, grid, dt, dev, skip=False, repeats=repeats)
    rows = [
        ["MonteCarloRaysampler", f"{fmt_rate(n_total / t_stock)}", f"{fmt_rate(n_total * spr_stock / t_stock)}",
         f"{spr_stock:.1f}", f"{useful:.1f}"],
        ["OccupancyGridRaysampler", f"{fmt_rate(n_total / t_ours)}", f"{fmt_rate(b.n_samples / t_ours)}",
         f"{spr_ours:.1f}", f"{spr_ours:.1f}"],
        ["ours vs stock", f"{t_stock / t_ours:.2f}x rays/s", "",
         f"{spr_stock / max(spr_ours, 1e-9):.1f}x fewer samples to evaluate", ""],
    ]
    march_rows = [
        ["every lattice step looked up", f"{t_every / n_total * 1e9:.0f}", "1.00x"],
        ["empty-space skipping", f"{t_skip / n_total * 1e9:.0f}", f"{t_every / t_skip:.2f}x"],
    ]
    table = (
        f"{n_total} rays (4 cameras), ball occupying {grid.occupancy_fraction:.1%} of the "
        f"128^3 grid, step {dt:.4f}\n\n"
    ) + markdown_table(["sampler", "rays/s", "samples/s", "samples/ray", "occupied samples/ray"], rows)
    table += "\n\nocc. march kernel alone (same rays, identical samples):\n\n" + markdown_table(
        ["march", "ns/ray", "speed-up"], march_rows
    )
    publish("sampling", dev, table, args.write_readme)


if __name__ == "__main__":
    main()
