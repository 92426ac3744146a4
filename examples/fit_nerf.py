"""Static-scene NeRF: PyTorch3D's tutorial, stock vs our occupancy-grid swap, side by side.

PyTorch3D's ``fit_simple_neural_radiance_field`` tutorial (harmonic-embedding MLP field, Monte
Carlo rays, EmissionAbsorption raymarching, Huber colour + silhouette loss, Adam at 1e-3 decayed
10x at 75%) trained twice on the same views with the same seed and the same wall-clock budget:

* stock: ``MonteCarloRaysampler`` + ``EmissionAbsorptionRaymarcher`` (``n_pts`` samples per ray);
* swapped: the same pipeline with an ``OccupancyGrid`` the script builds and the raysampler
  updates (``update_fn=field.density``), ``OccupancyGridRaysampler`` (samples only in occupied
  cells, at the stock sampling step) and ``OccupancyGridRaymarcher`` (early ray termination).

The two trainings run in alternation (the one with less training time so far takes the next
step), so a background load slows both alike; evaluation is off the clock.

Data: the generated views of a procedural mesh (PyTorch3D mesh renderer, cached; default) or a
NeRF-synthetic folder (``--data path/to/lego``, ``transforms_{train,val}.json``).

Outputs in ``--workspace`` (default ``outputs/nerf``), written atomically: ``metrics.json``
(PSNR at equal time, rays/s, render ms/frame of both), ``psnr_curve.png`` (validation PSNR
against training seconds, both pipelines) and ``turntable.mp4`` (the swapped model).

    python examples/fit_nerf.py                               # generated views, ~3-4 min on 2 CPU cores
    python examples/fit_nerf.py --data nerf_synthetic/lego --downscale 8 --seconds 300
"""

import argparse
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
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, ImplicitRenderer, MonteCarloRaysampler,  # noqa: E402
                                NDCMultinomialRaysampler, PerspectiveCameras, RayBundle,
                                look_at_view_transform)
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pt3d_radnerf.atomic import atomic_path, remove_stale_temporaries, write_text  # noqa: E402
from pt3d_radnerf.data.static_scene import MeshViewsConfig, ensure_mesh_views, load_blender  # noqa: E402
from pt3d_radnerf.models import HarmonicNeRFField  # noqa: E402
from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher,  # noqa: E402
                                   OccupancyGridRaysampler, render_compacted)
from pt3d_radnerf.training.video import write_video  # noqa: E402

PIPELINES = ("stock", "swapped")


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
    p.add_argument("--evals", type=int, default=6, help="points of the PSNR curve after t = 0")
    p.add_argument("--val-views", type=int, default=5, help="validation views of the final metrics")
    p.add_argument("--eval-views", type=int, default=2, help="validation views per curve point")
    p.add_argument("--turntable-frames", type=int, default=24)
    return p.parse_args(argv)


def huber(x, y, scaling=0.1):
    """The tutorial's pseudo-Huber loss (per element)."""
    return ((1.0 + (x - y) ** 2 / scaling**2).clamp(1e-4).sqrt() - 1.0) * scaling


def ndc_extent(height: int, width: int):
    """PyTorch3D's NDC half-extents (x, y) of an H x W image (the short side spans [-1, 1])."""
    return max(width / height, 1.0), max(height / width, 1.0)


def sample_images_at_xys(images: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, n, C) of images (B, H, W, C) at NDC xys (B, n, 2) (+x left, +y up:
    grid_sample's axes negated, the edges of the image at the NDC extent)."""
    b, h, w = images.shape[:3]
    ex, ey = ndc_extent(h, w)
    grid = -xys.reshape(b, -1, 1, 2) / xys.new_tensor([ex, ey])
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, align_corners=False)
    return out[..., 0].permute(0, 2, 1)


def composite(images: torch.Tensor, background: torch.Tensor):
    """(..., 4) raymarched rgb + opacity -> rgb on the background (..., 3) and opacity (..., 1)."""
    return images[..., :3] + (1.0 - images[..., 3:]) * background, images[..., 3:]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10.0 * torch.log10(((a - b) ** 2).mean().clamp(min=1e-12)))


class Pipeline:
    """One training run: field, optimizer, training renderer, full-image render, bookkeeping."""

    def __init__(self, name: str, scene, args, device):
        self.name = name
        torch.manual_seed(args.seed)  # both pipelines start from the same weights
        near, far = scene.min_depth, scene.max_depth
        # density_scale = 1 / stock step: the head's output r gives the tutorial's per-sample
        # opacity 1 - exp(-r) at the stock sampling rate (both pipelines share the field).
        field = HarmonicNeRFField(args.n_harmonic, args.hidden, args.layers,
                                  density_scale=args.n_pts / (far - near)).to(device)
        ex, ey = ndc_extent(*scene.image_size)
        h, w = scene.image_size
        # ---- PyTorch3D's tutorial: Monte Carlo rays for training, EA raymarching ----
        raysampler_mc = MonteCarloRaysampler(min_x=-ex, max_x=ex, min_y=-ey, max_y=ey, n_rays_per_image=args.rays,
                                             n_pts_per_ray=args.n_pts, min_depth=near, max_depth=far)
        renderer_mc = ImplicitRenderer(raysampler=raysampler_mc, raymarcher=EmissionAbsorptionRaymarcher())
        if name == "swapped":
            # ---- the swap: a grid (the stock sampling step), our raysampler and raymarcher ----
            sweep = math.ceil(args.grid_resolution**3 / args.cells_per_update)  # steps to visit every cell
            threshold = args.grid_threshold or 0.1 * args.n_pts / (far - near)
            grid = OccupancyGrid(aabb=scene.aabb, resolution=args.grid_resolution, step_size=(far - near) / args.n_pts,
                                 update_every=1, warmup_steps=2 * sweep, cells_per_update=args.cells_per_update,
                                 threshold=threshold).to(device)
            grid.mark_unseen(scene.cameras, scene.image_size)  # cells no training view sees stay empty
            raysampler_mc = OccupancyGridRaysampler(min_x=-ex, max_x=ex, min_y=-ey, max_y=ey, min_depth=near,
                                                    max_depth=far, n_rays_per_image=args.rays, occupancy_grid=grid,
                                                    update_fn=field.density)
            renderer_mc = ImplicitRenderer(raysampler=raysampler_mc, raymarcher=OccupancyGridRaymarcher())
            self.grid = grid
            self.render_sampler = OccupancyGridRaysampler(image_width=w, image_height=h, min_depth=near,
                                                          max_depth=far, occupancy_grid=grid)
        else:  # the tutorial's full-image sampler (rendered in chunks of rays)
            self.render_sampler = NDCMultinomialRaysampler(image_width=w, image_height=h, n_pts_per_ray=args.n_pts,
                                                           min_depth=near, max_depth=far)
        self.field, self.renderer = field, renderer_mc
        self.optimizer = torch.optim.Adam(field.parameters(), lr=args.lr)
        self.seconds, self.steps, self.rays, self.samples, self.curve = 0.0, 0, 0, 0, []
        self.decayed = False

    def step(self, scene, args, background):
        """One tutorial training step on random cameras; adds its wall time to ``seconds``."""
        start = time.perf_counter()
        if not self.decayed and self.seconds >= 0.75 * args.seconds:  # the tutorial's lr drop at 75%
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.1
            self.decayed = True
        idx = torch.randperm(len(scene))[: args.batch_cameras]
        images, bundle = self.renderer(cameras=scene.cameras[idx], volumetric_function=self.field)
        rgb, opacity = composite(images, background)
        colors_at_rays = sample_images_at_xys(scene.images[idx], bundle.xys)
        silhouettes_at_rays = sample_images_at_xys(scene.silhouettes[idx, ..., None], bundle.xys)
        loss = huber(rgb, colors_at_rays).mean() + huber(opacity, silhouettes_at_rays).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.seconds += time.perf_counter() - start
        self.steps += 1
        self.rays += bundle.xys[..., 0].numel()
        self.samples += bundle.n_samples if self.name == "swapped" else bundle.lengths.numel()

    @torch.no_grad()
    def render(self, cameras, background, chunk_rays: int = 1024):
        """Full images (B, H, W, 3) on the background."""
        self.field.eval()
        if self.name == "swapped":
            images = render_compacted(cameras, self.field, self.render_sampler, OccupancyGridRaymarcher())
        else:  # the tutorial's batched forward: the field on chunks of rays, then EA raymarching
            bundle = self.render_sampler(cameras=cameras)
            flat = [x.reshape(-1, x.shape[-1]) for x in (bundle.origins, bundle.directions, bundle.lengths, bundle.xys)]
            outputs = [self.field(RayBundle(*(x[s : s + chunk_rays] for x in flat)))
                       for s in range(0, flat[0].shape[0], chunk_rays)]
            shape = bundle.lengths.shape
            images = EmissionAbsorptionRaymarcher()(torch.cat([o[0] for o in outputs]).view(*shape, 1),
                                                    torch.cat([o[1] for o in outputs]).view(*shape, 3))
        self.field.train()
        return composite(images, background)[0]


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

    pipelines = {name: Pipeline(name, train, args, device) for name in PIPELINES}
    curve_views = val.cameras[list(range(min(args.eval_views, len(val))))]
    checkpoints = [args.seconds * k / args.evals for k in range(args.evals + 1)]

    def evaluate(p):
        p.curve.append((p.seconds, psnr(p.render(curve_views, background), val.images[: len(curve_views)])))

    bar = tqdm(total=round(2 * args.seconds), unit="s", desc="training (stock + swapped)")
    for p in pipelines.values():
        evaluate(p)
    while any(p.seconds < args.seconds for p in pipelines.values()):
        p = min((q for q in pipelines.values() if q.seconds < args.seconds), key=lambda q: q.seconds)
        before = p.seconds
        p.step(train, args, background)
        bar.update(round(min(p.seconds, args.seconds)) - round(before))
        while len(p.curve) < len(checkpoints) and p.seconds >= checkpoints[len(p.curve)]:
            evaluate(p)  # the model at (about) this checkpoint's training time
        bar.set_postfix({q.name: f"{q.curve[-1][1]:.1f}dB/{q.steps}st" for q in pipelines.values()})
    bar.close()

    metrics = {"data": root, "image_size": list(train.image_size), "seconds_budget": args.seconds,
               "args": vars(args)}
    for name, p in pipelines.items():
        start = time.perf_counter()
        renders = p.render(val.cameras, background)
        render_ms = (time.perf_counter() - start) / len(val) * 1e3
        metrics[name] = {
            "psnr": psnr(renders, val.images), "steps": p.steps, "train_seconds": p.seconds,
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
