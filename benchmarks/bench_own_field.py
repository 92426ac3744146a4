"""Your own field, stock vs swapped: PyTorch3D's NeRF tutorial trained both ways in one run.

The training pipelines of ``examples/fit_nerf.py`` (``pt3d_radnerf.training.nerf``) with the
tutorial-size field of issue 14 (``HarmonicNeRFField``: 60 harmonics, 4 x 128 MLP), 128 points
per ray for stock (the swapped grid marches at the same step), the same seed and the same
wall-clock budget per pipeline, trained in alternation on the generated mesh views (40 views,
64 x 64; cached):

* stock: ``MonteCarloRaysampler`` + ``EmissionAbsorptionRaymarcher``;
* swapped: ``OccupancyGrid`` (updated every step) + ``OccupancyGridRaysampler`` +
  ``OccupancyGridRaymarcher``.

Reported: rays/s, PSNR at equal time (validation views), time to a target PSNR (default: the
lower of the two final curve PSNRs; linear interpolation on a 12-point curve of one
validation view), render ms/frame and field evaluations per frame (full validation images),
share of training time in grid updates. Then the cost of one bounded grid update at resolution 128 with the trained field
against a swapped training step (issue 14's bound: <= 10%).

    python benchmarks/bench_own_field.py [--threads 2] [--seconds 300] [--quick] [--write-readme]

``--quick``: a smoke run, not the issue's setting (32 x 32 views, 1 camera x 256 rays per
step, 64 points per ray, 15 s per pipeline, a 4-point curve). Default: 4 cameras x 1024 rays
(4096 rays per step), 300 s per pipeline.
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, parser, publish, sync  # noqa: E402

from pt3d_radnerf.data.static_scene import MeshViewsConfig, ensure_mesh_views, load_blender  # noqa: E402
from pt3d_radnerf.renderer import OccupancyGrid  # noqa: E402
from pt3d_radnerf.training.metrics import psnr  # noqa: E402
from pt3d_radnerf.training.nerf import PIPELINES, NeRFFitConfig, NeRFPipeline, train_side_by_side  # noqa: E402


def time_to_psnr(curve, target):
    """Training seconds at which the (seconds, PSNR) curve first reaches ``target`` (linear
    interpolation between evaluations), or None."""
    for i, (t, v) in enumerate(curve):
        if v >= target:
            if i == 0:
                return t
            t0, v0 = curve[i - 1]
            return t0 + (t - t0) * (target - v0) / (v - v0)
    return None


def count_field_samples(field):
    """Counts the samples the field evaluates (rows of its colour output) via a forward hook;
    returns (counter dict, hook handle)."""
    counter = {"samples": 0}

    def hook(_module, _inputs, outputs):
        counter["samples"] += outputs[1].reshape(-1, outputs[1].shape[-1]).shape[0]

    return counter, field.register_forward_hook(hook)


def main():
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="smoke run: 32 x 32 views, 1 x 256 rays, 64 points, 15 s")
    p.add_argument("--seconds", type=float, default=None, help="training budget per pipeline")
    p.add_argument("--target-psnr", type=float, default=None, help="dB (default: lower final curve PSNR)")
    p.add_argument("--grid-resolution", type=int, default=32,
                   help="the training grid (a run of minutes must revisit every cell often)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    # --quick: a smoke run (smaller views, steps and sampling), not the setting.
    cameras, rays, n_pts, size, evals = (1, 256, 64, 32, 4) if args.quick else (4, 1024, 128, 64, 12)
    seconds = args.seconds or (15.0 if args.quick else 300.0)
    config = NeRFFitConfig(seconds=seconds, batch_cameras=cameras, rays=rays, n_pts=n_pts, n_harmonic=60,
                           hidden=128, layers=4, grid_resolution=args.grid_resolution, cells_per_update=4096)
    root = ensure_mesh_views(MeshViewsConfig(n_views=40, size=size))
    train = load_blender(root, "train", device=dev)
    val = load_blender(root, "val", device=dev)
    background = torch.tensor(train.background, device=dev)
    curve_views = val.cameras[[0]]
    pipelines = {name: NeRFPipeline(name, train, config, dev) for name in PIPELINES}

    def evaluate(q):
        q.curve.append((q.seconds, psnr(q.render(curve_views, background), val.images[:1])))

    def progress(q, _before):
        if q.steps % 10 == 0:
            print(f"  {q.name}: {q.seconds:.0f} s, {q.steps} steps, {q.curve[-1][1]:.2f} dB", flush=True)

    print(f"training both pipelines for {seconds:g} s ({cameras} x {rays} rays per step)", flush=True)
    checkpoints = [seconds * k / evals for k in range(evals + 1)]
    train_side_by_side(pipelines, train, background, checkpoints, evaluate, progress)

    result = {}
    for name, q in pipelines.items():
        counter, handle = count_field_samples(q.field)
        render_s = []
        for _ in range(2):  # best of 2
            sync(dev)
            start = time.perf_counter()
            renders = q.render(val.cameras, background)
            sync(dev)
            render_s.append(time.perf_counter() - start)
        result[name] = {"render_ms": min(render_s) / len(val) * 1e3,
                        "evals": counter["samples"] / (2 * len(val)), "psnr": psnr(renders, val.images)}
        handle.remove()
    target = args.target_psnr or min(q.curve[-1][1] for q in pipelines.values())
    for name, q in pipelines.items():
        result[name]["to_target"] = time_to_psnr(q.curve, target)

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "n/a"

    def secs(x):
        return "not reached" if x is None else f"{x:.1f} s"

    stock, swapped = pipelines["stock"], pipelines["swapped"]
    s, w = result["stock"], result["swapped"]
    rps = {name: q.rays / q.seconds for name, q in pipelines.items()}
    rows = [
        ["training steps", stock.steps, swapped.steps, ratio(swapped.steps, stock.steps)],
        ["rays / s", f"{rps['stock']:.0f}", f"{rps['swapped']:.0f}", ratio(rps["swapped"], rps["stock"])],
        ["field samples / ray (training)", f"{stock.samples / stock.rays:.1f}",
         f"{swapped.samples / swapped.rays:.1f}", ""],
        [f"PSNR after {seconds:g} s ({len(val)} val views)", f"{s['psnr']:.2f} dB", f"{w['psnr']:.2f} dB",
         f"{w['psnr'] - s['psnr']:+.2f} dB"],
        [f"time to {target:.2f} dB", secs(s["to_target"]), secs(w["to_target"]),
         ratio(s["to_target"], w["to_target"])],
        ["render ms / frame (best of 2)", f"{s['render_ms']:.0f}", f"{w['render_ms']:.0f}",
         ratio(s["render_ms"], w["render_ms"])],
        ["field evaluations / frame", f"{s['evals']:,.0f}", f"{w['evals']:,.0f}", ratio(s["evals"], w["evals"])],
        ["share of training time in grid updates", "-", f"{swapped.update_seconds / swapped.seconds:.1%}", ""],
    ]

    # One bounded update at resolution 128 with the trained field, as many cells as rays per
    # step (the README's advice for an MLP field), against a swapped step (its training time
    # without the updates, per step).
    step_s = (swapped.seconds - swapped.update_seconds) / swapped.steps
    g = OccupancyGrid(aabb=train.aabb, resolution=128, step_size=swapped.grid.step_size, update_every=1,
                      warmup_steps=0, cells_per_update=cameras * rays).to(dev)
    full = OccupancyGrid(aabb=train.aabb, resolution=128, step_size=swapped.grid.step_size).to(dev)
    full.update(lambda x: (x.norm(dim=-1) < 0.5).float() * 100.0, step=0)  # every cell: a ball occupied
    g.load_state_dict(full.state_dict())
    g.update(swapped.field.density, 1)  # warm-up (lazy tables, allocator)
    update_s = []
    for step in range(2, 7):
        sync(dev)
        start = time.perf_counter()
        g.update(swapped.field.density, step)
        sync(dev)
        update_s.append(time.perf_counter() - start)
    update_s = min(update_s)
    update_rows = [[f"swapped training step ({cameras * rays} rays, without its update)",
                    f"{step_s * 1e3:.0f} ms", "1.00"],
                   [f"grid update at 128^3, cells_per_update={cameras * rays} (best of 5)",
                    f"{update_s * 1e3:.0f} ms", f"{update_s / step_s:.2f}"]]
    cfg = (f"Tutorial field (60 harmonics, 4 x 128 MLP), {cameras} x {rays} rays per step, stock "
           f"{config.n_pts} points per ray, swapped grid {config.grid_resolution}^3 "
           f"({config.cells_per_update} cells per update), {seconds:g} s per pipeline, seed {config.seed}, "
           f"{len(train)} train / {len(val)} val views of {train.image_size[0]} x {train.image_size[1]}; "
           f"occupied at the end: {swapped.grid.occupancy_fraction:.1%}. The 128^3 update starts from a "
           f"ball of radius 0.5 ({g.occupancy_fraction:.1%} occupied)")
    body = (cfg + "\n\n" + markdown_table(["", "stock", "swapped", "swapped vs stock"], rows) + "\n\n"
            + markdown_table(["one grid update vs a training step", "wall time", "share of the step"], update_rows))
    publish("own-field", args.device, body, args.write_readme)


if __name__ == "__main__":
    main()
