"""Rendering speed of a trained talking head on the inference fast path, against the MLP floor.

Default: ``make run``'s model (the workspace ``outputs/talking_head``'s last checkpoint, or
``--ckpt``, several allowed: one block of rows each) renders held-out frames of the dataset it
was fitted on (``--data``, default the built-in synthetic head) exactly as inference does
(``render_compacted``, latent code 0, the frame's audio and eye) at 128^2, 256^2 and 450^2 (the
frame's cameras, whose NDC intrinsics keep the field of view at any size). Per resolution, means
over the frames of each frame's best of ``--repeats`` renders:

- ms/frame (audio encoding included) and samples evaluated per frame;
- rays that reach occupied cells, and the fraction of them terminated early by transmittance
  (``T < t_thresh`` before their samples ran out: what opaque surfaces buy);
- where the time goes: march (``ops.occupancy_march``), field (every field call; of it, the two
  grid encoders' forward kernels), compositing (``ops.composite``), the rest (compaction
  bookkeeping, audio);
- the roofline ratio ``render time / (samples x MLP FLOPs / GEMM FLOP/s)``: the MLP FLOPs per
  sample are those the field computes (its Linear layers, the audio half of ambient_net's first
  layer excluded: it runs once per camera); GEMM FLOP/s is measured in the same run with
  ``F.linear`` on exactly those layer shapes, at the mean number of samples per field call;
- PSNR against the ground truth at the dataset's own size (head over its background, as
  evaluation scores it).

``--bf16`` adds rows with the field's MLPs under bfloat16 autocast (``field.mlp_autocast``):
speed and PSNR.

``--before TREE [--before-ckpt CKPT]``: before/after in one run. TREE is a checkout of earlier
code with its extension built (e.g. ``git worktree add /tmp/before <commit>`` and a copy of
``pt3d_radnerf/_C*.so``); its own bench_render.py runs first in a child process (same sizes,
frames, repeats and threads; on ``--before-ckpt``, default the ``--ckpt`` models, since a model
trained by the earlier code is what that code renders) and its rows head the table, labelled
with the tree's commit.

``--paths``: the older comparison of the two render paths (single-pass ImplicitRenderer vs
render_compacted) on an opaque analytic blob, with the analytic field and with RAD-NeRF's
network whose density is replaced by the blob's (README table ``render-paths``).

    python benchmarks/bench_render.py [--ckpt CKPT ...] [--data DIR] [--sizes 128 256 450]
        [--threads 2] [--frames 4] [--repeats 3] [--bf16] [--quick] [--write-readme]
        [--before TREE [--before-ckpt CKPT ...]]
    python benchmarks/bench_render.py --paths [--size 128] [--write-readme]
"""

import os
import subprocess
import sys
import time
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch3d.renderer import FoVPerspectiveCameras, ImplicitRenderer, look_at_view_transform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, parser, publish, sync  # noqa: E402

from pt3d_radnerf import ops  # noqa: E402
from pt3d_radnerf.data import TalkingHeadDataset  # noqa: E402
from pt3d_radnerf.models import AudioRadianceField  # noqa: E402
from pt3d_radnerf.models import encoders as encoders_module  # noqa: E402
from pt3d_radnerf.models.radiance_field import RADNERF_AABB  # noqa: E402
from pt3d_radnerf.ops.encoding import grid_encode  # noqa: E402
from pt3d_radnerf.renderer import (OccupancyGrid, OccupancyGridRaymarcher,  # noqa: E402
                                   OccupancyGridRaysampler, render_compacted)
from pt3d_radnerf.training import HeadModel  # noqa: E402
from pt3d_radnerf.training.checkpoint import checkpoint_candidates  # noqa: E402
from pt3d_radnerf.training.inference import over  # noqa: E402
from pt3d_radnerf.training.metrics import psnr  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKSPACE = os.path.join(ROOT, "outputs", "talking_head")
TARGETS = "targets (2 CPU threads): 128^2 >= 25 FPS (<= 40 ms), 450^2 <= 300 ms/frame, roofline ratio <= 1.5"


# ---- the trained model ----------------------------------------------------------------------------
def resolve_checkpoint(path: str) -> str:
    """A head checkpoint file from a file, a checkpoints/ folder or a workspace (its newest)."""
    if os.path.isfile(path):
        return path
    for folder in (os.path.join(path, "checkpoints"), path):
        found = checkpoint_candidates(folder, "model")
        if found:
            return found[0]
    raise SystemExit(f"no head checkpoint (model_*.pth) at {path}: run `make run` first (it trains "
                     f"{DEFAULT_WORKSPACE}) or pass --ckpt a checkpoint file or workspace")


class Timed:
    """Wraps a callable and accumulates the wall time (synchronised) and number of its calls."""

    def __init__(self, fn, device):
        self.fn, self.device, self.seconds, self.calls = fn, device, 0.0, 0

    def __call__(self, *args, **kwargs):
        sync(self.device)
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


class FieldProbe(Timed):
    """Timed field that also counts its samples and marks the rays that got any."""

    def __init__(self, field, device, n_rays):
        super().__init__(field, device)
        self.samples = 0
        self.hit = torch.zeros(n_rays, dtype=torch.bool, device=device)

    def __call__(self, ray_bundle, **kwargs):
        self.samples += ray_bundle.n_samples
        self.hit[ray_bundle.ray_indices] = True
        return super().__call__(ray_bundle=ray_bundle, **kwargs)


def render_frame_probed(model: HeadModel, data: TalkingHeadDataset, index: int, size: int, bf16: bool = False):
    """One frame as inference renders it (HeadModel.layers), instrumented: returns the head's
    layers (colour (H, W, 3), opacity (H, W, 1)) and a dict of times (s) and counts. ``bf16``:
    the field's MLPs run under bfloat16 autocast (``field.mlp_autocast``)."""
    dev = model.device
    sampler = model.raysampler(size, size)

    model.field.mlp_autocast = torch.bfloat16 if bf16 else None
    field = FieldProbe(model.field, dev, size * size)
    march, composite = Timed(ops.occupancy_march, dev), Timed(ops.composite, dev)
    encoders = Timed(grid_encode, dev)  # both grid encoders' forward kernels, inside the field's time
    audio = model.audio_windows(data.audio_features, data.aud_index[index : index + 1])
    with mock.patch.object(ops, "occupancy_march", march), mock.patch.object(ops, "composite", composite), \
            mock.patch.object(encoders_module, "grid_encode", encoders):
        sync(dev)
        start = time.perf_counter()
        with torch.no_grad():
            code = model.field.encode_audio(audio)
            images, aux = render_compacted(
                data.cameras([index], dev), field, sampler, model.raymarcher, audio_code=code,
                frame_index=torch.zeros(1, dtype=torch.long, device=dev),
                eye=data.eye[index : index + 1].to(dev), background=None, return_aux=True)
        sync(dev)
        total = time.perf_counter() - start
    opacity = aux["opacity"].reshape(-1)
    stopped = field.hit & (1.0 - opacity < model.raymarcher.t_thresh)
    layers = (images[0, ..., :3], images[0, ..., 3:])
    stats = dict(total=total, march=march.seconds, field=field.seconds, composite=composite.seconds,
                 encoders=encoders.seconds,
                 samples=field.samples, calls=field.calls, hit=int(field.hit.sum()), stopped=int(stopped.sum()))
    return layers, stats


def mlp_layers(field: AudioRadianceField):
    """(in, out) of every Linear the field applies per sample (ambient_net's first layer: only its
    spatial-feature columns; the audio half runs once per camera)."""
    shapes = []
    for net in (field.ambient_net, field.sigma_net, field.color_net):
        for i, layer in enumerate(m for m in net if isinstance(m, nn.Linear)):
            cols = field.encoder.output_dim if net is field.ambient_net and i == 0 else layer.in_features
            shapes.append((cols, layer.out_features))
    return shapes


def gemm_flops_per_s(shapes, rows: int, device, repeats: int) -> float:
    """FLOP/s (2 per multiply-add) of F.linear over ``shapes`` on ``rows`` rows (best of repeats)."""
    xs = [torch.rand(rows, i, device=device) for i, _ in shapes]
    ws = [torch.randn(o, i, device=device) for i, o in shapes]
    best = float("inf")
    for _ in range(repeats + 1):  # the first warms up
        sync(device)
        start = time.perf_counter()
        for x, w in zip(xs, ws):
            F.linear(x, w)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * sum(i * o for i, o in shapes) / best


def bench_model(ckpt: str, data: TalkingHeadDataset, sizes, frames: int, repeats: int, device, bf16=False):
    """Table rows of one checkpoint at every size (``bf16``: the render under bfloat16 autocast)."""
    model = HeadModel.from_checkpoint(ckpt, device)
    model.field.eval()
    label = f"{os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(ckpt))))}, {model.steps} steps"
    label += ", bf16 autocast" if bf16 else ""
    shapes = mlp_layers(model.field)
    macs = sum(i * o for i, o in shapes)
    picks = torch.linspace(0, len(data) - 1, min(frames, len(data))).round().long().tolist()
    rows = []
    for size in sizes:
        runs = []
        for i in picks:
            best = None
            for _ in range(repeats + 1):  # the first run warms caches and the allocator up
                layers, stats = render_frame_probed(model, data, i, size, bf16)
                if best is None or stats["total"] < best[1]["total"]:
                    best = (layers, stats)
            runs.append(best)
        mean = {k: sum(s[k] for _, s in runs) / len(runs) for k in runs[0][1]}
        call_rows = max(int(mean["samples"] / max(mean["calls"], 1)), 1)  # the MLPs' rows per GEMM:
        if model.field.query_chunk and not bf16:  # a call's pieces of query_chunk points (float32, no grad)
            call_rows = min(call_rows, model.field.query_chunk)
        rate = gemm_flops_per_s(shapes, call_rows, device, repeats=5)
        floor = mean["samples"] * 2.0 * macs / rate
        quality = ""
        if size == data.height == data.width:
            quality = f"{sum(psnr(over(l, data.head_background(i)), data.image(i)) for (l, _), i in zip(runs, picks)) / len(picks):.2f}"
        rest = mean["total"] - mean["march"] - mean["field"] - mean["composite"]
        rows.append([label, f"{size}^2", f"{mean['total'] * 1e3:.0f}", f"{1.0 / mean['total']:.1f}",
                     f"{mean['samples'] / 1e3:.1f} k", f"{mean['hit'] / (size * size):.1%}",
                     f"{mean['stopped'] / max(mean['hit'], 1):.1%}", f"{mean['march'] * 1e3:.1f}",
                     f"{mean['field'] * 1e3:.1f}", f"{mean['composite'] * 1e3:.1f}", f"{rest * 1e3:.1f}",
                     f"{floor * 1e3:.1f} ({rate / 1e9:.0f} GFLOP/s)", f"{mean['total'] / floor:.2f}", quality,
                     f"{mean['encoders'] * 1e3:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows, macs


def before_rows(args, columns: int):
    """The rows of ``args.before``'s own bench_render.py (a child process on that checkout),
    their model label prefixed with the checkout's commit."""
    tree = os.path.abspath(args.before)
    script = os.path.join(tree, "benchmarks", "bench_render.py")
    if not os.path.isfile(script):
        raise SystemExit(f"--before {args.before}: no benchmarks/bench_render.py there (give a checkout of the code)")
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or os.path.basename(tree)
    cmd = [sys.executable, script, "--sizes", *map(str, args.sizes), "--frames", str(args.frames),
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--device", args.device]
    for ckpt in args.before_ckpt or args.ckpt or []:
        cmd += ["--ckpt", ckpt]
    if args.data:
        cmd += ["--data", args.data]
    env = dict(os.environ, PYTHONPATH=tree)
    print(f"before: {commit} ({tree})", flush=True)
    run = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"--before {args.before}: its bench_render.py failed:\n{run.stderr[-2000:]}")
    rows = []
    for line in run.stdout.splitlines():
        cells = line.split(" | ")
        # A row as printed; earlier versions may lack the trailing columns.
        if not line.startswith("|") and len(cells) in (columns - 1, columns) and cells[1].endswith("^2"):
            rows.append([f"before ({commit}): {cells[0]}", *cells[1:], *[""] * (columns - len(cells))])
            print(" | ".join(rows[-1]), flush=True)
    if not rows:
        raise SystemExit(f"--before {args.before}: no table rows in its output:\n{run.stdout[-2000:]}")
    return rows


def model_table(args) -> str:
    ckpts = [resolve_checkpoint(c) for c in (args.ckpt or [DEFAULT_WORKSPACE])]
    if args.data:
        root = args.data
    else:
        from pt3d_radnerf.data.synthetic import ensure_synthetic
        root = ensure_synthetic(progress=False)
    data = TalkingHeadDataset(root, "val")
    header = ["model", "size", "ms/frame", "FPS", "samples/frame", "rays hitting the grid",
              "of those stopped by T", "march ms", "field ms", "composite ms", "other ms",
              "MLP floor ms (GEMM rate)", "roofline ratio", f"PSNR ({data.width}^2)", "of field: grid encoders ms"]
    rows, macs = (before_rows(args, len(header)) if args.before else []), 0
    for ckpt in ckpts:
        for bf16 in (False, True) if args.bf16 else (False,):
            got, macs = bench_model(ckpt, data, args.sizes, args.frames, args.repeats, args.device, bf16)
            rows += got
    return (f"held-out frames of {os.path.basename(os.path.normpath(root))} ({args.frames} frames, best of "
            f"{args.repeats} each), render_compacted as inference, {macs:,} MLP multiply-adds per sample\n\n"
            f"{TARGETS}\n\n") + markdown_table(header, rows)


# ---- --paths: single pass vs render_compacted on an analytic blob ---------------------------------
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


def paths_table(args) -> str:
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

        t_single, img_single = best_time(run_single, dev, args.repeats)
        t_compact, img_compact = best_time(lambda: render_compacted(cams, compact, sampler, marcher, **kw), dev,
                                           args.repeats)
        n_single, n_compact = single.samples // args.repeats, compact.samples // args.repeats  # per render
        err = float((img_single - img_compact).abs().max())
        rows.append([name, "single pass (ImplicitRenderer)", f"{n_single:,}", f"{t_single * 1e3:.0f} ms", ""])
        rows.append([name, "render_compacted", f"{n_compact:,} ({n_single / n_compact:.1f}x fewer)",
                     f"{t_compact * 1e3:.0f} ms ({t_single / t_compact:.1f}x)", f"{err:.1e}"])
        print(" | ".join(rows[-2]), "\n", " | ".join(rows[-1]), flush=True)
    return (f"{args.size}x{args.size} rays, blob occupying {grid.occupancy_fraction:.1%} of the 128^3 grid, "
            f"step {grid.step_size:.4f}, t_thresh 1e-4, best of {args.repeats}\n\n") + markdown_table(
        ["field", "path", "samples evaluated", "wall time", "max abs image diff"], rows)


def main():
    p = parser(__doc__)
    p.add_argument("--ckpt", action="append", help="head checkpoint, checkpoints/ folder or workspace "
                   f"(repeatable; default: the newest checkpoint of {DEFAULT_WORKSPACE})")
    p.add_argument("--data", help="dataset folder for cameras, audio and ground truth (default: the synthetic head)")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 450], help="square image sizes")
    p.add_argument("--frames", type=int, default=4, help="held-out frames per size")
    p.add_argument("--repeats", type=int, default=3, help="timed renders per frame (the best counts)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="1 frame, 1 repeat, sizes 64 and 128 (smoke run)")
    p.add_argument("--bf16", action="store_true", help="also render each model under bfloat16 autocast (CPU)")
    p.add_argument("--before", metavar="TREE", help="a checkout of earlier code (extension built): its "
                   "bench_render.py runs first, in one run with this one")
    p.add_argument("--before-ckpt", action="append", help="the model(s) --before renders (repeatable; default: "
                   "--ckpt's)")
    p.add_argument("--paths", action="store_true", help="single pass vs render_compacted on an analytic blob")
    p.add_argument("--size", type=int, default=128, help="image size of --paths")
    args = p.parse_args()
    if args.quick:
        args.frames, args.repeats = 1, 1
        args.sizes = [64, 128] if args.sizes == p.get_default("sizes") else args.sizes
    torch.set_num_threads(args.threads)
    if args.paths:
        publish("render-paths", args.device, paths_table(args), args.write_readme)
    else:
        publish("render", args.device, model_table(args), args.write_readme)


if __name__ == "__main__":
    main()
