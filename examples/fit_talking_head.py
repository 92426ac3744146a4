"""Fit an audio-driven talking head (RAD-NeRF on PyTorch3D's ImplicitRenderer) and render speech.

With no arguments: generates (once, cached) the built-in synthetic talking head, fits it on the
CPU in about ten minutes, evaluates on the held-out end of the clip with its own audio and writes
into the workspace (default ``outputs/talking_head``):

    checkpoints/model_*.pth   resumable training state (``--resume`` continues it)
    metrics.json              PSNR, SSIM, mouth PSNR, lip-sync correlation, render time
    loss_psnr.png             training curves
    val_render.mp4            held-out frames rendered from held-out audio (with sound)
    val_side_by_side.mp4      ground truth | render (with sound)
    new_audio.mp4             the head driven by new speech (``--audio``, default: a fresh
                              synthetic clip), with sound

Examples:
    python examples/fit_talking_head.py
    python examples/fit_talking_head.py --data path/to/radnerf_dataset --iters 20000 --device cuda
    python examples/fit_talking_head.py --render-only outputs/talking_head/checkpoints/model_0002000.pth --audio speech.wav
"""

import argparse
import dataclasses
import os
import sys
import time

import torch

from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import ensure_synthetic
from pt3d_radnerf.training.evaluate import write_outputs
from pt3d_radnerf.training.trainer import FitConfig, TalkingHeadTrainer, load_spec


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="RAD-NeRF dataset folder (default: the built-in synthetic head)")
    p.add_argument("--iters", type=int, default=FitConfig.iters, help="training steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workspace", default="outputs/talking_head", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the workspace's last checkpoint")
    p.add_argument("--audio", help="new speech (.wav, or a RAD-NeRF feature .npy) for new_audio.mp4")
    p.add_argument("--audio-features", default=None,
                   help="training audio features: logmel (ours, from aud.wav), deepspeech, esperanto, "
                        "wav2vec, hubert or a .npy path (default: a precomputed npy if present, else logmel)")
    p.add_argument("--render-only", metavar="CKPT", help="skip training: evaluate and render a checkpoint")
    p.add_argument("--shuffle-audio", action="store_true",
                   help="control experiment: shuffle training audio across frames (lip-sync should drop)")
    p.add_argument("--seed", type=int, default=FitConfig.seed)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda requested but no CUDA device is available")
    root = args.data or ensure_synthetic()
    print(f"dataset: {root}")
    train = TalkingHeadDataset(root, "train", audio=args.audio_features, cache_size=1024)
    val = TalkingHeadDataset(root, "val", audio=args.audio_features)
    if args.shuffle_audio:
        gen = torch.Generator().manual_seed(args.seed + 1)
        train.audio_features = train.audio_features[torch.randperm(train.audio_features.shape[0], generator=gen)]
    config = FitConfig(iters=args.iters, seed=args.seed)
    ckpt_dir = os.path.join(args.workspace, "checkpoints")

    if args.render_only:
        trainer = TalkingHeadTrainer(train, config, args.workspace, args.device, val, spec=load_spec(args.render_only))
        trainer.checkpointer.load(args.render_only, checkpointables=["progress"])
        train_seconds = None
    else:
        if os.path.isfile(os.path.join(ckpt_dir, "last_checkpoint")) and not args.resume:
            sys.exit(f"{args.workspace} already holds a run: pass --resume to continue it, or choose "
                     f"another --workspace")
        trainer = TalkingHeadTrainer(train, config, args.workspace, args.device, val)
        start = time.perf_counter()
        trainer.fit(resume=args.resume)
        train_seconds = time.perf_counter() - start

    extra = {"train_seconds_this_run": train_seconds, "config": dataclasses.asdict(config),
             "dataset": root, "shuffled_audio": args.shuffle_audio, "device": args.device,
             "threads": torch.get_num_threads()}
    metrics = write_outputs(trainer, val, args.workspace, args.audio, extra=extra)
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
