"""Your own field, stock vs swapped: the cost of one occupancy-grid update against a training step.

PyTorch3D's NeRF-tutorial field at the size of issue 14 (harmonic embedding with 60 frequencies,
a 4 x 128 softplus MLP, alpha output) on an opaque ball of radius 0.5 in the box [-1, 1]^3. One
training step (forward, backward, Adam) renders 4096 random rays of a 128 x 128 camera:

* stock: ``NDCMultinomialRaysampler`` with 128 points per ray + ``EmissionAbsorptionRaymarcher``;
* swapped: ``OccupancyGridRaysampler`` over a 128^3 grid holding the ball (packed samples at the
  grid's step) + ``OccupancyGridRaymarcher``.

Against the swapped step (the smaller one) it times ``OccupancyGrid.update`` at resolution 128
with ``cells_per_update`` cells (default: as many as rays per step, the README's recommendation
for an MLP field with ``update_every=1``) and with ``cells_per_update=None`` (instant-ngp's policy
after warm-up: a quarter of the cells plus occupied ones). The target of issue 14: one bounded
update <= 10% of a training step.

    python benchmarks/bench_own_field.py [--device cuda] [--threads N] [--quick] [--cells N] [--write-readme]

``--quick`` renders 1024 rays per step (and budgets 1024 cells), one repeat.
"""

import os
import sys
import time

import torch
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, FoVPerspectiveCameras, ImplicitRenderer,
                                NDCMultinomialRaysampler, look_at_view_transform)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, parser, publish, sync  # noqa: E402

from pt3d_radnerf.models import HarmonicNeRFField  # noqa: E402
from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher,  # noqa: E402
                                   OccupancyGridRaysampler, PackedRayBundle)

RADIUS = 0.5


def timed(fn, device, repeats):
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="1024 rays per step, 1024 cells, one repeat")
    p.add_argument("--cells", type=int, default=None, help="cells_per_update (default: rays per step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    rays = 1024 if args.quick else 4096
    budget = args.cells or rays
    repeats = 1 if args.quick else 3
    torch.manual_seed(0)
    field = HarmonicNeRFField().to(dev)  # the tutorial field at 60 harmonics, 4 x 128
    optimizer = torch.optim.Adam(field.parameters(), lr=5e-4)
    R, T = look_at_view_transform(dist=2.0, elev=20.0, azim=30.0)
    cams = FoVPerspectiveCameras(R=R, T=T, fov=40.0, device=dev)
    target = torch.rand(1, rays, 1, 3, device=dev)

    grid = OccupancyGrid(resolution=128).to(dev)
    grid.update(lambda x: (x.norm(dim=-1) < RADIUS).float() * 100.0, step=0)  # the ball's cells
    stock = ImplicitRenderer(NDCMultinomialRaysampler(image_width=128, image_height=128, n_pts_per_ray=128,
                                                      min_depth=1.2, max_depth=4.2), EmissionAbsorptionRaymarcher())
    swapped = ImplicitRenderer(OccupancyGridRaysampler(image_width=128, image_height=128, occupancy_grid=grid),
                               OccupancyGridRaymarcher(t_thresh=0.0))
    samples = {}

    def step(renderer, name):
        images, bundle = renderer(cameras=cams, volumetric_function=field, n_rays_per_image=rays)
        samples[name] = bundle.n_samples if isinstance(bundle, PackedRayBundle) else bundle.lengths.numel()
        loss = ((images[..., :3].reshape(target.shape) - target) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t_stock = timed(lambda: step(stock, "stock"), dev, repeats)
    t_swapped = timed(lambda: step(swapped, "swapped"), dev, repeats)
    rows = [["training step, stock (128 points per ray)", f"{samples['stock']:,} samples",
             f"{t_stock * 1e3:.0f} ms", ""],
            ["training step, swapped (occupied samples)", f"{samples['swapped']:,} samples",
             f"{t_swapped * 1e3:.0f} ms", "1.00"]]
    for cells in (budget, None):
        g = OccupancyGrid(resolution=128, update_every=1, warmup_steps=0, cells_per_update=cells).to(dev)
        g.load_state_dict(grid.state_dict())
        t = timed(lambda: g.update(field.density, step=1), dev, repeats)
        n = cells if cells is not None else f"{g.n_cells // 4:,} + occupied"
        rows.append([f"grid update, cells_per_update={cells}", f"{n} cells", f"{t * 1e3:.0f} ms",
                     f"{t / t_swapped:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    table = (f"Tutorial field (60 harmonics, 4 x 128 MLP), {rays} rays per step, ball of radius "
             f"{RADIUS} ({grid.occupancy_fraction:.1%} of a 128^3 grid), best of {repeats}\n\n"
             + markdown_table(["what", "work", "wall time", "share of a swapped step"], rows))
    publish("own-field", dev, table, args.write_readme)


if __name__ == "__main__":
    main()
