"""Scale-out on torch.distributed: the head fit and batch rendering on 1 and 2 processes.

* fit: steps/s of ``TalkingHeadTrainer`` on the synthetic head with the same global batch
  (``--cameras`` x ``--rays`` per step) on 1 process and on 2 (gloo, DDP), each process with
  cores // N threads; the scaling efficiency is speed-up / N.
* communication: the bytes DDP all-reduces per step (every trainable parameter's gradient) and
  the measured time of one all-reduce of that many bytes between the 2 processes.
* render: frames/s of ``examples/render_talking_head.py`` (one ``--render-seconds`` clip, frames
  split across the processes, rank 0 encodes) on 1 and 2 processes.
* projection for ``--project-gpus`` GPUs from the 1-process step: the part every process repeats
  (occupancy update and the march of the global batch, measured) + the rest / G + a ring
  all-reduce of the gradient bytes at the ASSUMED bus bandwidth ``--bus-gbps`` (GB/s;
  2 (G - 1) / G x bytes / bandwidth). Measured on this device: run with ``--device cuda`` on a GPU
  machine for a GPU projection (the 2-process runs stay on the CPU).

``--quick`` runs a short version; ``--write-readme`` updates the ``scale-cpu`` block in README.md.
"""

import json
import os
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp

from common import markdown_table, parser, publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pt3d_radnerf.data import TalkingHeadDataset  # noqa: E402
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic  # noqa: E402
from pt3d_radnerf.training import FitConfig, TalkingHeadTrainer, distributed  # noqa: E402


def _join(rank: int, world: int, port: int) -> None:
    distributed.join_local(rank, world, port)
    torch.set_num_threads(distributed.default_threads())


class _Timer:
    """Wraps a callable and adds up its wall time (synchronising ``device``)."""

    def __init__(self, fn, device: str) -> None:
        self.fn, self.device, self.seconds = fn, device, 0.0

    def __call__(self, *args, **kwargs):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out


def fit_worker(rank: int, world: int, port: int, opts: dict) -> None:
    """Times ``opts["steps"]`` training steps after ``opts["warmup"]``; rank 0 writes the result."""
    device = opts.get("device", "cpu")
    if world > 1:
        _join(rank, world, port)
    else:
        torch.set_num_threads(opts["threads"])
    config = FitConfig(**opts["config"])
    data = TalkingHeadDataset(opts["root"], "train")
    trainer = TalkingHeadTrainer(data, config, opts["workspace"], device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trainer.start_fresh()
        update = trainer.grid.update = _Timer(trainer.grid.update, device)
        sampler = trainer.head.raysampler(data.height, data.width)
        march = sampler.forward = _Timer(sampler.forward, device)
        for step in range(opts["warmup"]):
            trainer.train_step(step)
        update.seconds = march.seconds = 0.0
        distributed.barrier()
        start = time.perf_counter()
        for step in range(opts["warmup"], opts["warmup"] + opts["steps"]):
            trainer.train_step(step)
        distributed.barrier()
        seconds = time.perf_counter() - start
    result = {"world": world, "threads": torch.get_num_threads(), "steps_per_s": opts["steps"] / seconds,
              "step_s": seconds / opts["steps"], "repeated_s": (update.seconds + march.seconds) / opts["steps"],
              "grad_bytes": distributed.gradient_bytes(trainer.field)}
    if world > 1:  # one all-reduce of the gradient bytes, as DDP does per step (in buckets)
        flat = torch.zeros(result["grad_bytes"] // 4, dtype=torch.float32)
        torch.distributed.all_reduce(flat)
        start = time.perf_counter()
        for _ in range(5):
            torch.distributed.all_reduce(flat)
        result["allreduce_s"] = (time.perf_counter() - start) / 5
    if rank == 0:
        trainer.progress.step = opts["warmup"] + opts["steps"]
        trainer.save()  # the checkpoint the render benchmark uses (1 process)
        with open(os.path.join(opts["out"], f"fit_{world}.json"), "w") as f:
            json.dump(result, f)
    distributed.shutdown()


def render_worker(rank: int, world: int, port: int, opts: dict) -> None:
    """Runs the render CLI on one clip; rank 0 writes frames/s."""
    if world > 1:
        _join(rank, world, port)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import render_talking_head

    out = os.path.join(opts["out"], f"render_{world}")
    argv = ["--ckpt", opts["ckpt"], "--data", opts["root"], "--audio", opts["clip"], "--out", out,
            "--threads", str(opts["threads"] if world == 1 else distributed.default_threads()), "--no-progress",
            "--device", opts.get("device", "cpu")]
    distributed.barrier()
    start = time.perf_counter()
    code = render_talking_head.main(argv)
    distributed.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        with open(os.path.join(opts["out"], f"render_{world}.json"), "w") as f:
            json.dump({"code": code, "frames_per_s": opts["frames"] / seconds}, f)
    distributed.shutdown()


def _run(worker, world: int, opts: dict, name: str) -> dict:
    # a fresh process for 1 too: every configuration starts alike (imports, allocator, threads)
    mp.spawn(worker, args=(world, distributed.free_port(), opts), nprocs=world, join=True)
    with open(os.path.join(opts["out"], f"{name}_{world}.json")) as f:
        return json.load(f)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="a short run (small head, few steps)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps")
    p.add_argument("--cameras", type=int, default=4, help="cameras per step (global batch)")
    p.add_argument("--rays", type=int, default=1024, help="rays per camera")
    p.add_argument("--render-seconds", type=float, default=2.0, help="length of the rendered clip")
    p.add_argument("--project-gpus", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="threads of the 1-process runs (default: all cores)")
    p.add_argument("--bus-gbps", type=float, default=100.0,
                   help="ASSUMED all-reduce bus bandwidth of the projection, GB/s (NVLink-class)")
    args = p.parse_args()
    cores = args.threads or os.cpu_count() or 1
    size, seconds, steps, warmup = (32, 4.0, 4, 1) if args.quick else (128, 40.0, args.steps, 3)
    root = ensure_synthetic(SyntheticConfig(size=size, seconds=seconds), progress=False)
    from pt3d_radnerf.training.evaluate import synthetic_new_speech

    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        render_seconds = 0.4 if args.quick else args.render_seconds
        clip = synthetic_new_speech(os.path.join(tmp, "clip.wav"), seconds=render_seconds)
        config = dict(iters=1000, cameras_per_step=args.cameras, rays_per_camera=64 if args.quick else args.rays,
                      grid_resolution=16 if args.quick else 64, validate_every=0)
        fit, render = {}, {}
        for world in (1, 2):
            opts = dict(root=root, config=config, steps=steps, warmup=warmup, out=tmp, threads=cores,
                        workspace=os.path.join(tmp, f"ws_{world}"), device=args.device if world == 1 else "cpu")
            fit[world] = _run(fit_worker, world, opts, "fit")
        ckpt = os.path.join(tmp, "ws_1", "checkpoints", f"model_{warmup + steps:07d}.pth")
        frames = round(render_seconds * 25)
        for world in (1, 2):
            opts = dict(root=root, ckpt=ckpt, clip=clip, frames=frames, out=tmp, threads=cores,
                        device=args.device if world == 1 else "cpu")
            render[world] = _run(render_worker, world, opts, "render")
            if render[world]["code"] != 0:
                raise SystemExit(f"render on {world} process(es) failed")

    one, two = fit[1], fit[2]
    g = args.project_gpus
    comm = 2 * (g - 1) / g * one["grad_bytes"] / (args.bus_gbps * 1e9)
    projected = one["repeated_s"] + (one["step_s"] - one["repeated_s"]) / g + comm
    rows = [
        ["fit, steps/s", f"{one['steps_per_s']:.2f}", f"{two['steps_per_s']:.2f}",
         f"{two['steps_per_s'] / (2 * one['steps_per_s']):.0%}"],
        ["render, frames/s", f"{render[1]['frames_per_s']:.2f}", f"{render[2]['frames_per_s']:.2f}",
         f"{render[2]['frames_per_s'] / (2 * render[1]['frames_per_s']):.0%}"],
    ]
    header = ["", f"1 process, {one['threads']} thread(s)", f"2 processes, {two['threads']} thread(s) each",
              "scaling efficiency (speed-up / 2)"]
    body = markdown_table(header, rows)
    body += (
        f"\n\nHead fit: {args.cameras} cameras x {config['rays_per_camera']} rays per step (global), "
        f"{size} x {size} synthetic head{', --quick' if args.quick else ''}. All-reduced per step: "
        f"{one['grad_bytes'] / 2**20:.1f} MiB of gradients (every trainable parameter, dense), measured "
        f"{1000 * two['allreduce_s']:.1f} ms per all-reduce over gloo between the 2 processes. Repeated by "
        f"every process (occupancy update + march of the global batch): {1000 * one['repeated_s']:.1f} of "
        f"{1000 * one['step_s']:.1f} ms per step ({one['repeated_s'] / one['step_s']:.0%}).\n\n"
        f"Projection for {g} GPUs from this 1-process step: {1000 * one['repeated_s']:.1f} ms repeated + "
        f"{1000 * (one['step_s'] - one['repeated_s']):.1f} ms / {g} + {1000 * comm:.2f} ms ring "
        f"all-reduce at an ASSUMED {args.bus_gbps:.0f} GB/s bus bandwidth = {1000 * projected:.1f} ms per step, "
        f"{one['step_s'] / projected:.1f}x the 1-process speed ({one['step_s'] / projected / g:.0%} efficiency)."
    )
    publish("scale", args.device, body, args.write_readme)


if __name__ == "__main__":
    main()
