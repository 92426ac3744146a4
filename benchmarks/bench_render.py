"""Single-pass ImplicitRenderer vs the compacted inference path (render_compacted), same scene.

An opaque analytic head-sized blob in RAD-NeRF's box, a 128^3 occupancy grid updated from it, one
128x128 camera, RAD-NeRF's step (2 sqrt(3) / 128) and early termination at T < 1e-4. Two fields
on that geometry: the analytic one (cheap: marching and compositing dominate) and RAD-NeRF's
network (AudioRadianceField at full size, untrained) whose density is replaced by the blob's,
so the geometry stays opaque while every sample costs a real field evaluation. Measured in one run:

    python benchmarks/bench_render.py [--device cuda] [--threads N] [--size 128] [--write-readme]
"""

import os
import sys
import time

import torch
from pytorch3d.renderer import FoVPerspectiveCameras, ImplicitRenderer, look_at_view_transform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, parser, publish, sync  # noqa: E402

from pt3d_radnerf.models import AudioRadianceField  # noqa: E402
from pt3d_radnerf.models.radiance_field import RADNERF_AABB  # noqa: E402
from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher,  # noqa: E402
                                   OccupancyGridRaysampler, render_compacted)

SCALE = torch.tensor([0.45, 0.4, 0.45])  # semi-axes of the blob (fits the box)


def blob_sigma(x: torch.Tensor) -> torch.Tensor:
    r = (x / SCALE.to(x)).norm(dim=-1)
    return 40.0 * torch.sigmoid(40.0 * (1.0 - r))


class Counting:
    """Wraps a field and counts the samples it is evaluated on."""

    def __init__(self, field):
        self.field, self.samples = field, 0

    def __call__(self, ray_bundle, **kwargs):
        self.samples += ray_bundle.n_samples
        return self.field(ray_bundle=ray_bundle, **kwargs)


def analytic(ray_bundle, **kwargs):
    x = ray_bundle.sample_points()
    alphas = 1.0 - torch.exp(-blob_sigma(x) * ray_bundle.deltas())
    return alphas[:, None], torch.sigmoid(3.0 * x + ray_bundle.sample_directions())


class BlobHead(AudioRadianceField):
    """RAD-NeRF's network with the blob's density: real per-sample cost, opaque geometry."""

    def _geometry(self, points, audio_code, eye, camera_index=None):
        _, geo, ambient = super()._geometry(points, audio_code, eye, camera_index)
        return blob_sigma(points), geo, ambient


def best_time(fn, device, repeats=3):
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    torch.manual_seed(0)
    grid = OccupancyGrid(aabb=RADNERF_AABB, resolution=128).to(dev)
    grid.update(blob_sigma, step=0)
    R, T = look_at_view_transform(dist=2.5, elev=10.0, azim=25.0)
    cams = FoVPerspectiveCameras(R=R, T=T, fov=35.0, device=dev)
    sampler = OccupancyGridRaysampler(image_width=args.size, image_height=args.size, occupancy_grid=grid)
    marcher = OccupancyGridRaymarcher(t_thresh=1e-4)
    head = BlobHead(audio_type=(16, 8), num_frames=1).to(dev).eval()
    fields = {"analytic blob": (analytic, {}),
              "RAD-NeRF network, blob density": (head, dict(audio=torch.randn(1, 8, 16, 8, device=dev)))}
    rows = []
    for name, (field, kw) in fields.items():
        single, compact = Counting(field), Counting(field)

        def run_single():
            with torch.no_grad():
                return ImplicitRenderer(sampler, marcher)(cameras=cams, volumetric_function=single, **kw)[0]

        t_single, img_single = best_time(run_single, dev)
        t_compact, img_compact = best_time(lambda: render_compacted(cams, compact, sampler, marcher, **kw), dev)
        n_single, n_compact = single.samples // 3, compact.samples // 3  # per render
        err = float((img_single - img_compact).abs().max())
        rows.append([name, "single pass (ImplicitRenderer)", f"{n_single:,}", f"{t_single * 1e3:.0f} ms", ""])
        rows.append([name, "render_compacted", f"{n_compact:,} ({n_single / n_compact:.1f}x fewer)",
                     f"{t_compact * 1e3:.0f} ms ({t_single / t_compact:.1f}x)", f"{err:.1e}"])
        print(" | ".join(rows[-2]), "\n", " | ".join(rows[-1]), flush=True)
    occ = grid.occupancy_fraction
    table = (
        f"{args.size}x{args.size} rays, blob occupying {occ:.1%} of the 128^3 grid, step "
        f"{grid.step_size:.4f}, t_thresh 1e-4, best of 3\n\n"
    ) + markdown_table(["field", "path", "samples evaluated", "wall time", "max abs image diff"], rows)
    publish("render", dev, table, args.write_readme)


if __name__ == "__main__":
    main()
