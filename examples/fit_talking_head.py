"""Fit an audio-driven talking head (RAD-NeRF on PyTorch3D's ImplicitRenderer) and render speech.

With no arguments: generates (once, cached) the built-in synthetic talking head, fits it on the
CPU in about ten minutes, evaluates on the held-out end of the clip with its own audio and writes
into the workspace (default ``outputs/talking_head``):

    checkpoints/model_*.pth   resumable training state (``--resume`` continues it)
    metrics.json              PSNR, SSIM, mouth PSNR, lip-sync correlation, render time
    loss_psnr.png             training curves
    val_render.mp4            held-out frames rendered from held-out audio (with sound)
    val_side_by_side.mp4      ground truth | render (with sound)
    new_audio.mp4             the head driven by new speech (``--audio``; default: a fresh
                              synthetic clip for a log-mel model, else the held-out split's
                              own audio features), with sound

Every training hyper-parameter is a flag (``--rays-per-camera``, ``--checkpoint-every``, ...: see
``--help``). All inputs (workspace, dataset, audio, checkpoint, config) are checked before
training starts; ``--resume`` refuses a config that differs from the checkpoint's.

Examples:
    python examples/fit_talking_head.py
    python examples/fit_talking_head.py --data path/to/radnerf_dataset --iters 20000 --device cuda
    python examples/fit_talking_head.py --render-only outputs/talking_head/checkpoints/model_0002000.pth --audio speech.wav
"""

import argparse
import dataclasses
import glob
import os
import sys
import time

import torch

from pt3d_radnerf.atomic import TEMP_PREFIX, write_bytes
from pt3d_radnerf.audio import FEATURE_TYPES
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import ensure_synthetic
from pt3d_radnerf.training import HeadModel, ModelSpec, TalkingHeadTrainer, check_audio_compatible
from pt3d_radnerf.training.config import add_config_arguments, config_from_args
from pt3d_radnerf.training.evaluate import resolve_new_audio, write_outputs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="RAD-NeRF dataset folder (default: the built-in synthetic head)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workspace", default="outputs/talking_head", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the workspace's last checkpoint")
    p.add_argument("--audio", help="new speech (an audio file, or a RAD-NeRF feature .npy) for new_audio.mp4")
    p.add_argument("--audio-type", choices=sorted(FEATURE_TYPES),
                   help="feature type of --audio (default: inferred from the file)")
    p.add_argument("--audio-features", default=None,
                   help="training audio features: logmel (ours, from aud.wav), deepspeech, esperanto, "
                        "wav2vec, hubert or a .npy path (default: a precomputed npy if present, else logmel)")
    p.add_argument("--eye-source", choices=("landmarks", "au"), default="landmarks",
                   help="eye control: RAD-NeRF's landmark eye area, or ER-NeRF's au.csv AU45")
    p.add_argument("--render-only", metavar="CKPT", help="skip training: evaluate and render a checkpoint")
    p.add_argument("--shuffle-audio", action="store_true",
                   help="control experiment: shuffle training audio across frames (lip-sync should drop)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads")
    add_config_arguments(p)
    args = p.parse_args(argv)
    try:
        args.config = config_from_args(args)
    except (TypeError, ValueError) as err:
        p.error(str(err))
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return args


def check_writable(folder: str, what: str) -> None:
    """Creates ``folder`` and writes (atomically) and removes a probe file in it."""
    probe = os.path.join(folder, TEMP_PREFIX + "probe")
    try:
        os.makedirs(folder, exist_ok=True)
        write_bytes(probe, b"")
        os.remove(probe)
    except OSError as err:
        raise OSError(f"{what} {folder} is not writable: {err}") from None


def load_split(root: str, split: str, args) -> TalkingHeadDataset:
    return TalkingHeadDataset(root, split, audio=args.audio_features, eye_source=args.eye_source,
                              cache_size=1024 if split == "train" else 256)


def prepare(args):
    """Everything that can fail on bad input, before any training: returns (root, train, val,
    head or None, new_audio)."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    check_writable(args.workspace, "--workspace")
    ckpt_dir = os.path.join(args.workspace, "checkpoints")
    if os.path.isdir(ckpt_dir):
        check_writable(ckpt_dir, "checkpoint folder")
    head = HeadModel.from_checkpoint(args.render_only, args.device) if args.render_only else None
    has_run = os.path.exists(os.path.join(ckpt_dir, "last_checkpoint")) or glob.glob(os.path.join(ckpt_dir, "model_*.pth"))
    if head is None and not args.resume and has_run:
        raise ValueError(f"{args.workspace} already holds a run: pass --resume to continue it, or choose "
                         f"another --workspace")
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data folder not found: {args.data}")
    root = args.data or ensure_synthetic()
    print(f"dataset: {root}")
    train = None if head is not None else load_split(root, "train", args)
    val = load_split(root, "val", args)
    if head is not None:
        spec = head.spec
        check_audio_compatible(spec, val.audio_features, f"held-out audio of {root}")
    else:
        spec = ModelSpec.for_dataset(train.audio_features, len(train))
    new_audio = resolve_new_audio(spec, val, args.workspace, args.audio, args.audio_type)
    return root, train, val, head, new_audio


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        root, train, val, head, new_audio = prepare(args)
    except (OSError, ValueError, TypeError) as err:
        print(f"fit_talking_head.py: error: {err}", file=sys.stderr)
        return 2
    config = head.config if head is not None else args.config

    if head is not None:
        history, steps, train_seconds = head.history, head.steps, None
    else:
        if args.shuffle_audio:
            gen = torch.Generator().manual_seed(config.seed + 1)
            train.audio_features = train.audio_features[torch.randperm(train.audio_features.shape[0], generator=gen)]
        trainer = TalkingHeadTrainer(train, config, args.workspace, args.device, val)
        start = time.perf_counter()
        try:
            trainer.fit(resume=args.resume)
        except ValueError as err:  # e.g. --resume with another config or model
            print(f"fit_talking_head.py: error: {err}", file=sys.stderr)
            return 2
        train_seconds = time.perf_counter() - start
        head, history, steps = trainer.head, trainer.progress.history, trainer.progress.step

    extra = {"train_seconds_this_run": train_seconds, "config": dataclasses.asdict(config),
             "dataset": root, "shuffled_audio": args.shuffle_audio, "device": args.device,
             "threads": torch.get_num_threads(), "eye_source": args.eye_source}
    metrics = write_outputs(head, val, args.workspace, new_audio, history, steps, extra=extra)
    print(f"validation ({metrics['frames']} held-out frames, held-out audio): PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.3f}, mouth PSNR {metrics['mouth_psnr']:.2f} dB, "
          f"lip-sync correlation {metrics['lipsync_corr']:.3f}, {metrics['render_ms_per_frame']:.0f} ms/frame")
    print(f"outputs in {os.path.abspath(args.workspace)}:")
    for name, path in metrics["outputs"].items():
        print(f"  {name:17s} {os.path.abspath(path)}")
    print(f"  {'metrics':17s} {os.path.abspath(os.path.join(args.workspace, 'metrics.json'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
