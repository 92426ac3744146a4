"""TalkingHeadDataset at scale: peak host memory and JPEG decoding on a generated large folder.

Generates a RAD-NeRF folder of ``--frames`` frames at ``--size`` x ``--size`` (cheap images: one
textured JPEG, one RGBA torso PNG, one parsing PNG and one landmarks file hard-linked under every
img_id, a DeepSpeech aud.npy; the last ``--val-frames`` frames are the val split), then in fresh
child processes (each peak RSS is its own) measures:

- data only: peak RSS (``ru_maxrss``) after the imports, after building the dataset (every
  load-time check: json, image headers, landmarks) and after drawing ``--steps`` training steps of
  4 random frames (image, torso image, head mask) through the bounded caches; the step rate when each step waits for its
  decodes versus when the next step's frames are prefetched on a thread while a stand-in for the
  training computation (``--compute-ms`` of sleep, as a GPU step leaves the host thread waiting)
  runs;
- the real thing (issue 15's target: host peak <= 3 GiB for 7,000 frames at 450x450): peak RSS of
  ``--train-steps`` steps of ``TalkingHeadTrainer`` (default config: 4 frames x 1024 rays, head
  over the ground-truth torso) on the whole training split, then the streaming evaluation of the
  val split (every frame rendered at full size, scored and encoded into two videos as it comes).

    python benchmarks/bench_data.py --quick     # 2,000 frames (the default is 7,000, Obama-sized)
"""

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import markdown_table, parser, publish  # noqa: E402

BATCH = 4  # frames per training step (the trainer draws 4 images per step)


def make_folder(root: str, frames: int, size: int, val_frames: int) -> None:
    """A RAD-NeRF layout folder whose frames all share one image and one landmarks file (hard links)."""
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    for sub in ("gt_imgs", "ori_imgs", "torso_imgs", "parsing"):
        os.makedirs(os.path.join(root, sub))
    # Smooth texture plus noise: decodes at the cost of a real frame of that size.
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(9 * xx + 3 * yy), np.cos(7 * yy), np.sin(5 * (xx + yy))], -1) * 80 + 128
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    first_img, first_lms = os.path.join(root, "gt_imgs", "0.jpg"), os.path.join(root, "ori_imgs", "0.lms")
    imageio.imwrite(first_img, image, quality=95)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lms = np.stack([size / 2 + size / 4 * np.cos(t), size / 2 + size / 3 * np.sin(t)], 1)
    np.savetxt(first_lms, lms, fmt="%.2f")
    rows = np.arange(size)[:, None, None]
    torso = np.concatenate([image, np.broadcast_to(np.where(rows > 0.7 * size, 255, 0), (size, size, 1))], -1)
    first_torso, first_parsing = os.path.join(root, "torso_imgs", "0.png"), os.path.join(root, "parsing", "0.png")
    imageio.imwrite(first_torso, torso.astype(np.uint8))
    parsing = np.where(rows > 0.7 * size, [0, 0, 255], np.where(rows > 0.2 * size, [255, 0, 0], [255, 255, 255]))
    imageio.imwrite(first_parsing, np.broadcast_to(parsing, (size, size, 3)).astype(np.uint8))
    for i in range(1, frames):
        os.link(first_img, os.path.join(root, "gt_imgs", f"{i}.jpg"))
        os.link(first_lms, os.path.join(root, "ori_imgs", f"{i}.lms"))
        os.link(first_torso, os.path.join(root, "torso_imgs", f"{i}.png"))
        os.link(first_parsing, os.path.join(root, "parsing", f"{i}.png"))
    imageio.imwrite(os.path.join(root, "bc.jpg"), image, quality=95)
    np.save(os.path.join(root, "aud_ds.npy"), rng.random((frames, 16, 29)).astype(np.float32))
    poses = []
    for i in range(frames):
        pose = np.eye(4)
        pose[:3, 3] = [0.01 * np.sin(i / 50), 0.01 * np.cos(i / 70), 0.7]
        poses.append({"img_id": i, "aud_id": i, "transform_matrix": pose.tolist()})
    for split, part in (("train", poses[: frames - val_frames]), ("val", poses[frames - val_frames:])):
        with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
            json.dump({"focal_len": 1.2 * size, "cx": size / 2, "cy": size / 2, "frames": part}, f)


def child(root: str, steps: int, cache_size: int, compute_ms: float, prefetch: bool) -> None:
    """Runs in a fresh process (one per mode, so each peak RSS is its own); prints one json line."""
    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    import torch

    from pt3d_radnerf.data import TalkingHeadDataset

    torch.set_num_threads(1)
    out = {"rss_imports": peak_mib()}
    start = time.perf_counter()
    data = TalkingHeadDataset(root, "train", cache_size=cache_size, prefetch_workers=1)
    out["build_s"] = time.perf_counter() - start
    out["rss_built"] = peak_mib()
    rng = random.Random(0)
    batches = [[rng.randrange(len(data)) for _ in range(BATCH)] for _ in range(steps + 1)]
    start = time.perf_counter()
    for s in range(steps):
        if prefetch:
            data.prefetch(batches[s + 1])
        for i in batches[s]:  # what a training step reads (frame, torso) and the head mask
            data.image(i), data.torso_rgba(i), data.head_mask(i)
        time.sleep(compute_ms / 1000.0)
    out["steps_per_s"] = steps / (time.perf_counter() - start)
    out["rss_drawn"] = peak_mib()
    start = time.perf_counter()
    for i in range(20):
        data._decode_checked(data.img_ids[i])
    out["decode_ms"] = (time.perf_counter() - start) / 20 * 1000.0
    data.close()
    print(json.dumps(out))


def train_child(root: str, steps: int) -> None:
    """Real training steps and the streaming evaluation (fresh process); prints one json line."""
    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    import torch

    from pt3d_radnerf.data import TalkingHeadDataset
    from pt3d_radnerf.training import FitConfig, TalkingHeadTrainer
    from pt3d_radnerf.training.evaluate import evaluate
    from pt3d_radnerf.training.video import VideoWriter

    out = {}
    train = TalkingHeadDataset(root, "train", cache_size=1024)  # the CLI's cache sizes
    val = TalkingHeadDataset(root, "val", cache_size=256)
    with tempfile.TemporaryDirectory(prefix="bench_data_ws_") as ws:
        trainer = TalkingHeadTrainer(train, FitConfig(iters=steps, validate_every=0), ws)
        start = time.perf_counter()
        trainer.fit(progress=False)
        out["train_s_per_step"] = (time.perf_counter() - start) / steps
        out["rss_trained"] = peak_mib()
        start = time.perf_counter()
        with VideoWriter(os.path.join(ws, "render.mp4"), 25) as render, \
                VideoWriter(os.path.join(ws, "side.mp4"), 25) as side:
            def encode(index, views, target):
                render.append(views["frame"])
                side.append(torch.cat([target, views["frame"]], 1))

            evaluate(trainer.head, val, progress=False, on_frame=encode)
        out["eval_s_per_frame"] = (time.perf_counter() - start) / len(val)
        out["rss_evaluated"] = peak_mib()
    train.close()
    val.close()
    print(json.dumps(out))


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 frames instead of 7,000")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--size", type=int, default=450)
    p.add_argument("--steps", type=int, default=None, help="training steps drawn (default: 150 quick, 600)")
    p.add_argument("--cache-size", type=int, default=256, help="decoded images kept (LRU)")
    p.add_argument("--compute-ms", type=float, default=25.0, help="stand-in training computation per step")
    p.add_argument("--train-steps", type=int, default=None, help="TalkingHeadTrainer steps (default: 3 quick, 10)")
    p.add_argument("--val-frames", type=int, default=None, help="val split rendered at full size (default: 3 quick, 12)")
    p.add_argument("--child", nargs=5, metavar=("ROOT", "STEPS", "CACHE", "COMPUTE_MS", "PREFETCH"),
                   help=argparse_hidden())
    p.add_argument("--train-child", nargs=2, metavar=("ROOT", "STEPS"), help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        root, steps, cache, compute, prefetch = args.child
        return child(root, int(steps), int(cache), float(compute), prefetch == "1")
    if args.train_child:
        return train_child(args.train_child[0], int(args.train_child[1]))
    frames = args.frames or (2000 if args.quick else 7000)
    steps = args.steps or (150 if args.quick else 600)
    train_steps = args.train_steps or (3 if args.quick else 10)
    val_frames = args.val_frames or (3 if args.quick else 12)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = os.path.join(tmp, "data")
        start = time.perf_counter()
        make_folder(root, frames, args.size, val_frames)
        print(f"generated {frames} frames at {args.size}x{args.size} in {time.perf_counter() - start:.1f} s")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                                          + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
        script = [sys.executable, os.path.abspath(__file__)]
        runs = {}
        for mode in ("0", "1"):
            done = subprocess.run(script + ["--child", root, str(steps), str(args.cache_size), str(args.compute_ms),
                                            mode], env=env, check=True, capture_output=True, text=True)
            runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        done = subprocess.run(script + ["--train-child", root, str(train_steps)], env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the training child failed:\n{done.stderr[-3000:]}")
        trained = json.loads(done.stdout.strip().splitlines()[-1])
    m, pf = runs["0"], runs["1"]
    cache_mib = args.cache_size * args.size * args.size * (3 + 4 + 1) / 2**20
    rows = [
        ["peak RSS after imports", f"{m['rss_imports']:.0f} MiB"],
        [f"peak RSS after building the dataset ({frames} frames, all load-time checks)", f"{m['rss_built']:.0f} MiB"],
        ["building the dataset", f"{m['build_s']:.2f} s"],
        [f"peak RSS after {steps} steps of {BATCH} random frames + torso images + head masks (caches of "
         f"{args.cache_size} each = {cache_mib:.0f} MiB as uint8), decoding on the training thread / prefetching",
         f"{m['rss_drawn']:.0f} / {pf['rss_drawn']:.0f} MiB"],
        [f"JPEG decode, {args.size}x{args.size}", f"{m['decode_ms']:.1f} ms"],
        [f"steps/s, decode on the training thread (+{args.compute_ms:g} ms compute stand-in)",
         f"{m['steps_per_s']:.1f}"],
        ["steps/s, next step's frames prefetched on a thread", f"{pf['steps_per_s']:.1f}"],
        [f"peak RSS after {train_steps} TalkingHeadTrainer steps ({frames - val_frames} training frames, head "
         f"over the GT torso; {trained['train_s_per_step']:.2f} s/step)", f"{trained['rss_trained']:.0f} MiB"],
        [f"peak RSS after the streaming evaluation of {val_frames} val frames at {args.size}x{args.size} "
         f"(2 videos; {trained['eval_s_per_frame']:.1f} s/frame); target <= 3072 MiB",
         f"**{trained['rss_evaluated']:.0f} MiB**"],
    ]
    publish("data", args.device, markdown_table(["measure", "value"], rows), args.write_readme)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
