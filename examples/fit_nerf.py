"""Static-scene NeRF: PyTorch3D's tutorial, stock vs our occupancy-grid swap, side by side.

PyTorch3D's ``fit_simple_neural_radiance_field`` tutorial (harmonic-embedding MLP field, Monte
Carlo rays, EmissionAbsorption raymarching, Huber colour + silhouette loss, Adam at 1e-3 decayed
10x at 75%) trained twice on the same views with the same seed and the same wall-clock budget:

* stock: ``MonteCarloRaysampler`` + ``EmissionAbsorptionRaymarcher`` (``n_pts`` samples per ray);
* swapped: the same pipeline with an ``OccupancyGrid`` updated every step
  (``grid.update(field.density, step)``), ``OccupancyGridRaysampler`` (samples only in occupied
  cells, at the stock sampling step; in training also only up to where each ray turns opaque)
  and ``OccupancyGridRaymarcher`` (early ray termination).

The pipelines live in ``pt3d_radnerf.training.nerf`` (shared with
``benchmarks/bench_own_field.py``); they train in alternation (the one with less training time
so far takes the next step), so a background load slows both alike; evaluation is off the clock.

Data: the generated views of a procedural mesh (PyTorch3D mesh renderer, cached; default) or a
NeRF-synthetic folder (``--data path/to/lego``, ``transforms_{train,val}.json``).

Outputs in ``--workspace`` (default ``outputs/nerf``), written atomically: ``metrics.json``
(PSNR at equal time, rays/s, render ms/frame, share of time in grid updates), ``psnr_curve.png`` (validation PSNR
against training seconds, both pipelines) and ``turntable.mp4`` (the swapped model).

    python examples/fit_nerf.py                               # generated views, ~3-4 min on 2 CPU cores
    python examples/fit_nerf.py --data nerf_synthetic/lego --downscale 8 --seconds 300
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pt3d_radnerf.atomic import atomic_path, remove_stale_temporaries, write_text  # noqa: E402
from pt3d_radnerf.data.static_scene import MeshViewsConfig, ensure_mesh_views, load_blender  # noqa: E402
from pt3d_radnerf.training.metrics import psnr  # noqa: E402
from pt3d_radnerf.training.nerf import PIPELINES, NeRFFitConfig, NeRFPipeline, train_side_by_side  # noqa: E402
from pt3d_radnerf.training.video import write_video  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="NeRF-synthetic folder (default: generated mesh views)")
    p.add_argument("--downscale", type=int, default=8, help="image downscale factor for --data (800 px -> 100)")
    p.add_argument("--views", type=int, default=40, help="generated views (every 8th held out)")
    p.add_argument("--size", type=int, default=64, help="generated view size in pixels")
    p.add_argument("--seconds", type=float, default=60.0, help="training budget per pipeline")
    p.add_argument("--workspace", default="outputs/nerf")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-cameras", type=int, default=2, help="cameras per step (tutorial: 6)")
    p.add_argument("--rays", type=int, default=256, help="rays per camera per step (tutorial: 750)")
    p.add_argument("--n-pts", type=int, default=32, help="stock samples per ray; sets the swapped step (tutorial: 128)")
    p.add_argument("--n-harmonic", type=int, default=60, help="harmonic functions (tutorial: 60)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grid-resolution", type=int, default=32,
                   help="32: a seconds-long run must revisit every cell often (README: 64-128 for long runs)")
    p.add_argument("--cells-per-update", type=int, default=4096, help="grid cells evaluated per step")
    p.add_argument("--grid-threshold", type=float, default=None,
                   help="occupancy threshold, sigma (default 0.1 / step: one step absorbs ~10%%; the grid's own "
                        "default 0.01 / step keeps most of a seconds-old, still foggy field occupied)")
    p.add_argument("--train-t-thresh", type=float, default=1e-4,
                   help="swapped training: early ray termination at this transmittance (0: off)")
    p.add_argument("--evals", type=int, default=6, help="points of the PSNR curve after t = 0")
    p.add_argument("--val-views", type=int, default=5, help="validation views of the final metrics")
    p.add_argument("--eval-views", type=int, default=2, help="validation views per curve point")
    p.add_argument("--turntable-frames", type=int, default=24)
    return p.parse_args(argv)


def turntable_cameras(cameras, n_frames: int) -> PerspectiveCameras:
    """An orbit around the axis the training cameras share as "up", at their mean distance and
    elevation and with the intrinsics of camera 0."""
    centres = cameras.get_camera_center()
    up = F.normalize(cameras.R[:, :, 1].mean(0), dim=0)  # PyTorch3D view +y in world coordinates
    radius = float(centres.norm(dim=-1).mean())
    elev = float(torch.asin((F.normalize(centres, dim=-1) @ up).clamp(-1, 1)).mean())
    e1 = F.normalize(torch.linalg.cross(up, centres[0]), dim=0)
    e2 = torch.linalg.cross(up, e1)
    a = torch.linspace(0, 2 * math.pi, n_frames + 1, device=up.device)[:n_frames, None]
    eye = radius * (math.cos(elev) * (torch.cos(a) * e1 + torch.sin(a) * e2) + math.sin(elev) * up)
    R, T = look_at_view_transform(eye=eye, at=((0.0, 0.0, 0.0),), up=(up.tolist(),), device=up.device)
    return PerspectiveCameras(R=R, T=T, focal_length=cameras.focal_length[:1].expand(n_frames, 2),
                              principal_point=cameras.principal_point[:1].expand(n_frames, 2),
                              image_size=cameras.image_size[:1].expand(n_frames, 2), device=up.device)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    os.makedirs(args.workspace, exist_ok=True)
    remove_stale_temporaries(args.workspace)
    if args.data is None:
        root, downscale = ensure_mesh_views(MeshViewsConfig(n_views=args.views, size=args.size)), 1
    else:
        root, downscale = args.data, args.downscale
    train = load_blender(root, "train", downscale=downscale, device=device)
    val = load_blender(root, "val", downscale=downscale, max_views=args.val_views, device=device)
    background = torch.tensor(train.background, device=device)
    print(f"data: {root} ({len(train)} train / {len(val)} val views, {train.image_size[0]} x "
          f"{train.image_size[1]}); {args.seconds:g} s per pipeline", flush=True)

    config = NeRFFitConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(NeRFFitConfig)})
    pipelines = {name: NeRFPipeline(name, train, config, device) for name in PIPELINES}
    curve_views = val.cameras[list(range(min(args.eval_views, len(val))))]
    checkpoints = [args.seconds * k / args.evals for k in range(args.evals + 1)]

    def evaluate(p):
        p.curve.append((p.seconds, psnr(p.render(curve_views, background), val.images[: len(curve_views)])))

    bar = tqdm(total=round(2 * args.seconds), unit="s", desc="training (stock + swapped)")

    def progress(p, before):
        bar.update(round(min(p.seconds, args.seconds)) - round(before))
        bar.set_postfix({q.name: f"{q.curve[-1][1]:.1f}dB/{q.steps}st" for q in pipelines.values()})

    train_side_by_side(pipelines, train, background, checkpoints, evaluate, progress)
    bar.close()

    metrics = {"data": root, "image_size": list(train.image_size), "seconds_budget": args.seconds,
               "args": vars(args)}
    for name, p in pipelines.items():
        start = time.perf_counter()
        renders = p.render(val.cameras, background)
        render_ms = (time.perf_counter() - start) / len(val) * 1e3
        metrics[name] = {
            "psnr": psnr(renders, val.images), "steps": p.steps, "train_seconds": p.seconds,
            "grid_update_share": p.update_seconds / p.seconds,
            "rays_per_second": p.rays / p.seconds, "samples_per_ray": p.samples / max(p.rays, 1),
            "render_ms_per_frame": render_ms, "curve": [[round(t, 3), round(v, 3)] for t, v in p.curve],
        }
    stock, swapped = metrics["stock"], metrics["swapped"]
    swapped["occupancy_fraction"] = pipelines["swapped"].grid.occupancy_fraction
    reached = [t for t, v in swapped["curve"] if v >= stock["psnr"]]
    metrics["comparison"] = {
        "psnr_gain_db": swapped["psnr"] - stock["psnr"],
        "rays_per_second_ratio": swapped["rays_per_second"] / stock["rays_per_second"],
        "render_speedup": stock["render_ms_per_frame"] / swapped["render_ms_per_frame"],
        "swapped_seconds_to_stock_final_psnr": reached[0] if reached else None,
    }
    write_text(os.path.join(args.workspace, "metrics.json"), json.dumps(metrics, indent=2))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, p in pipelines.items():
        ax.plot(*zip(*p.curve), marker="o", label=f"{name} ({metrics[name]['rays_per_second']:.0f} rays/s)")
    ax.set_xlabel("training seconds")
    ax.set_ylabel(f"validation PSNR (dB, {len(curve_views)} views)")
    ax.set_title("NeRF tutorial field: stock vs occupancy-grid swap")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(os.path.join(args.workspace, "psnr_curve.png")) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)

    cams = turntable_cameras(train.cameras, args.turntable_frames)
    frames = torch.cat([pipelines["swapped"].render(cams[list(range(i, min(i + 8, len(cams))))], background)
                        for i in tqdm(range(0, len(cams), 8), desc="turntable (8 frames per batch)")])
    write_video(frames, os.path.join(args.workspace, "turntable.mp4"), fps=12)
    for name in PIPELINES:
        m = metrics[name]
        print(f"{name:8s} PSNR {m['psnr']:.2f} dB after {m['steps']} steps in {m['train_seconds']:.0f} s, "
              f"{m['rays_per_second']:.0f} rays/s, {m['samples_per_ray']:.1f} samples/ray, "
              f"render {m['render_ms_per_frame']:.0f} ms/frame")
    print(f"outputs in {args.workspace}: metrics.json, psnr_curve.png, turntable.mp4")
    return metrics


if __name__ == "__main__":
    main()
