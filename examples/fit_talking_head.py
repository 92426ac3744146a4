"""Fit an audio-driven talking head (RAD-NeRF on PyTorch3D's ImplicitRenderer) and render speech.

With no arguments: generates (once, cached) the built-in synthetic talking head, fits it on the
CPU in about ten minutes, evaluates on the held-out end of the clip with its own audio and writes
into the workspace (default ``outputs/talking_head``):

    checkpoints/model_*.pth   resumable training state (``--resume`` continues it)
    checkpoints/torso_*.pth   the torso stage's state (``--torso``), the head included
    metrics.json              PSNR, SSIM, mouth PSNR, lip-sync correlation, render time
    loss_psnr.png             training curves
    val_render.mp4            held-out frames rendered from held-out audio (with sound)
    val_side_by_side.mp4      ground truth | render (with sound)
    new_audio.mp4             the head driven by new speech (``--audio``; default: a fresh
                              synthetic clip for a log-mel model, else the held-out split's
                              own audio features), with sound

Torso (RAD-NeRF's ``--torso``, for folders with ``torso_imgs/``): after the head, a second run with
``--torso`` trains the pose-driven torso behind the frozen head (the workspace's last head
checkpoint, or ``--head-ckpt``); its evaluation renders the full frame, head over torso over
bc.jpg, and also scores the head over the ground-truth torso (``psnr_head``, RAD-NeRF's number).
``--resume`` continues whichever stage the workspace is in.

Under torchrun (``torchrun --nproc_per_node N examples/fit_talking_head.py ...``) one model trains
data-parallel on N processes (gloo on the CPU, NCCL on GPUs, one GPU per process): the
``--cameras-per-step`` cameras of a step are split across the processes, which must divide them.
Only rank 0 writes (checkpoints, metrics, plots, videos). See README "Scale-out".

Every training hyper-parameter is a flag (``--rays-per-camera``, ``--checkpoint-every``, ...: see
``--help``). All inputs (workspace, dataset, audio, checkpoint, config) are checked before
training starts. ``--resume`` continues the checkpoint's config: flags not given take its values
(also where a later version changed a default), and a given flag that differs is refused.

Examples:
    python examples/fit_talking_head.py
    python examples/fit_talking_head.py --data path/to/radnerf_dataset --iters 20000 --device cuda
    python examples/fit_talking_head.py --data path/to/radnerf_dataset --torso --iters 2000
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
from pt3d_radnerf.training import (HeadModel, HeadTorsoModel, ModelSpec, TalkingHeadTrainer, TorsoTrainer,
                                   check_audio_compatible, distributed, load_model)
from pt3d_radnerf.training.checkpoint import STAGE_PREFIXES, checkpoint_candidates, first_readable, tag_name
from pt3d_radnerf.training.config import add_config_arguments, config_from_args
from pt3d_radnerf.training.evaluate import resolve_new_audio, write_outputs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="RAD-NeRF dataset folder (default: the built-in synthetic head)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workspace", default="outputs/talking_head", help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the workspace's last checkpoint (of whichever stage the workspace is in)")
    p.add_argument("--torso", action="store_true",
                   help="RAD-NeRF's torso stage: train the torso behind a trained, frozen head (needs torso_imgs/)")
    p.add_argument("--head-ckpt", metavar="CKPT",
                   help="the head the torso stage trains behind (default: the workspace's last head checkpoint)")
    p.add_argument("--audio", help="new speech (an audio file, or a RAD-NeRF feature .npy) for new_audio.mp4")
    p.add_argument("--audio-type", choices=sorted(FEATURE_TYPES),
                   help="feature type of --audio (default: inferred from the file)")
    p.add_argument("--audio-features", default=None,
                   help="training audio features: logmel (ours, from aud.wav), deepspeech, esperanto, "
                        "wav2vec, hubert or a .npy path (default: a precomputed npy if present, else logmel)")
    p.add_argument("--eye-source", choices=("landmarks", "au"), default="landmarks",
                   help="eye control: RAD-NeRF's landmark eye area, or ER-NeRF's au.csv AU45")
    p.add_argument("--render-only", metavar="CKPT",
                   help="skip training: evaluate and render a checkpoint (head model_*.pth or torso_*.pth)")
    p.add_argument("--shuffle-audio", action="store_true",
                   help="control experiment: shuffle training audio across frames (lip-sync should drop)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process (default: the cores shared by the node's processes)")
    add_config_arguments(p)
    args = p.parse_args(argv)
    try:
        args.config = config_from_args(args)
    except (TypeError, ValueError) as err:
        p.error(str(err))
    if args.threads is None:
        args.threads = distributed.default_threads()
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.head_ckpt and not args.torso:
        p.error("--head-ckpt is the head of the torso stage: pass it with --torso")
    if args.render_only and (args.torso or args.resume):
        p.error("--render-only trains nothing: it takes no --torso or --resume")
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


def workspace_stage(ckpt_dir: str):
    """"torso" when the checkpoint folder holds torso-stage checkpoints, "head" when it holds
    head checkpoints only, None when it holds neither."""
    for stage in ("torso", "head"):
        prefix = STAGE_PREFIXES[stage]
        if os.path.exists(os.path.join(ckpt_dir, tag_name(prefix))) or glob.glob(os.path.join(ckpt_dir, f"{prefix}_*.pth")):
            return stage
    return None


def torso_head(args, ckpt_dir: str, resumed) -> HeadModel:
    """The frozen head of the torso stage: the one stored in the resumed torso checkpoint
    (``resumed``: its (path, data), None when not resuming), ``--head-ckpt``, or the workspace's
    last head checkpoint."""
    if resumed is not None:
        return HeadModel.from_state(resumed[1]["head"], resumed[0], args.device)
    if args.head_ckpt:
        return HeadModel.from_checkpoint(args.head_ckpt, args.device)
    found = first_readable(checkpoint_candidates(ckpt_dir, STAGE_PREFIXES["head"]))
    if found is None:
        raise ValueError(f"--torso trains behind a fitted head, but {ckpt_dir} holds no head checkpoint: "
                         f"train the head first (the same command without --torso) or pass --head-ckpt")
    return HeadModel.from_checkpoint(found[0], args.device)


def prepare(args, root=None):
    """Everything that can fail on bad input, before any training: returns (stage, root, train,
    val, model, new_audio); stage is "head", "torso" or None (--render-only), model the head
    the torso stage trains behind, or the model to render (None: the head stage builds it).

    Only rank 0 writes (probes, the synthetic dataset, new_speech.wav); the other processes of a
    torchrun job are given rank 0's dataset ``root`` and get no new_audio (None)."""
    main = distributed.is_main()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    ckpt_dir = os.path.join(args.workspace, "checkpoints")
    if main:
        check_writable(args.workspace, "--workspace")
        if os.path.isdir(ckpt_dir):
            check_writable(ckpt_dir, "checkpoint folder")
    found = workspace_stage(ckpt_dir)
    if args.render_only:
        stage = None
    elif args.torso or (args.resume and found == "torso"):
        stage = "torso"
        if found == "torso" and not args.resume:
            raise ValueError(f"{args.workspace} already holds a torso-stage run: pass --resume to continue it, "
                             f"or choose another --workspace")
        if found == "torso" and args.head_ckpt:
            raise ValueError(f"--head-ckpt: the torso run in {args.workspace} continues behind the head its "
                             f"checkpoints hold; drop --head-ckpt (or use another --workspace)")
    else:
        stage = "head"
        if found and not args.resume:
            raise ValueError(f"{args.workspace} already holds a run: pass --resume to continue it, or choose "
                             f"another --workspace")
    resumed = None  # (path, data) of the checkpoint this run continues, read once
    if args.resume and stage is not None and found == stage:
        resumed = first_readable(checkpoint_candidates(ckpt_dir, STAGE_PREFIXES[stage]))
        if resumed is None and stage == "torso":
            raise ValueError(f"--resume: no readable torso checkpoint in {ckpt_dir}")
        if resumed is not None and "config" in resumed[1]:
            # Flags not given continue the checkpoint's values, not this version's defaults.
            args.config = config_from_args(args, resumed[1]["config"])
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data folder not found: {args.data}")
    root = root or args.data or ensure_synthetic()
    if main:
        print(f"dataset: {root}")
    train = None if stage is None else load_split(root, "train", args)
    if stage == "torso" and not train.has_torso:
        raise ValueError(f"--torso needs RAD-NeRF's RGBA torso images, but {os.path.join(root, 'torso_imgs')} "
                         f"does not exist")
    val = load_split(root, "val", args)
    if stage is None:
        model = load_model(args.render_only, args.device)
        spec = model.spec
        check_audio_compatible(spec, val.audio_features, f"held-out audio of {root}")
    else:
        spec = ModelSpec.for_dataset(train.audio_features, len(train))
        model = torso_head(args, ckpt_dir, resumed) if stage == "torso" else None
        if model is not None and model.spec != spec:
            raise ValueError(f"the head to train the torso behind was made for model {model.spec}, not for "
                             f"this training data ({spec}): another dataset or audio features?")
    new_audio = resolve_new_audio(spec, val, args.workspace, args.audio, args.audio_type) if main else None
    return stage, root, train, val, model, new_audio


def main(argv=None) -> int:
    args = parse_args(argv)
    joined_here = distributed.world_size() == 1  # not called inside a running job (tests)
    try:
        args.device = distributed.init_from_env(args.device)
        if distributed.world_size() > 1:
            if args.render_only:
                raise ValueError("--render-only renders in one process; under torchrun use "
                                 "examples/render_talking_head.py (frames split across processes)")
            distributed.check_divisible(args.config.cameras_per_step)
    except (OSError, ValueError, RuntimeError) as err:
        if distributed.is_main():  # the same error on every process
            print(f"fit_talking_head.py: error: {err}", file=sys.stderr)
        if joined_here:
            distributed.shutdown()
        return 2
    try:
        return run(args)
    finally:
        if joined_here:
            distributed.shutdown()


def run(args) -> int:
    """Prepares, trains (every process) and evaluates (rank 0); returns the exit status."""
    torch.set_num_threads(args.threads)
    prepared = distributed.prepare_everywhere(lambda root: prepare(args, root), lambda p: p[1],
                                               "fit_talking_head.py")
    if prepared is None:
        return 2
    stage, root, train, val, model, new_audio = prepared
    config = model.config if stage is None else args.config

    if stage is None:
        history, steps, train_seconds = model.history, model.steps, None
    else:
        if args.shuffle_audio:
            gen = torch.Generator().manual_seed(config.seed + 1)
            train.audio_features = train.audio_features[torch.randperm(train.audio_features.shape[0], generator=gen)]
        if stage == "torso":
            trainer = TorsoTrainer(train, model, config, args.workspace, args.device, val)
        else:
            trainer = TalkingHeadTrainer(train, config, args.workspace, args.device, val)
        start = time.perf_counter()
        try:
            trainer.fit(resume=args.resume)
        except ValueError as err:  # e.g. --resume with another config or model (the same on every rank)
            if distributed.is_main():
                print(f"fit_talking_head.py: error: {err}", file=sys.stderr)
            return 2
        train_seconds = time.perf_counter() - start
        history, steps = trainer.progress.history, trainer.progress.step
        model = trainer.model if stage == "torso" else trainer.head
        if not distributed.is_main():
            return 0  # rank 0 evaluates and writes

    extra = {"train_seconds_this_run": train_seconds, "config": dataclasses.asdict(config),
             "dataset": root, "shuffled_audio": args.shuffle_audio, "device": args.device,
             "threads": torch.get_num_threads(),
             "world_size": distributed.world_size(), "eye_source": args.eye_source,
             "stage": stage or ("torso" if isinstance(model, HeadTorsoModel) else "head")}
    metrics = write_outputs(model, val, args.workspace, new_audio, history, steps, extra=extra)
    print(f"validation ({metrics['frames']} held-out frames, held-out audio): PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.3f}, mouth PSNR {metrics['mouth_psnr']:.2f} dB, "
          f"lip-sync correlation {metrics['lipsync_corr']:.3f}, {metrics['render_ms_per_frame']:.0f} ms/frame "
          f"({metrics['frame_render']})")
    if "psnr_head" in metrics:
        print(f"head over the ground-truth torso: PSNR {metrics['psnr_head']:.2f} dB, "
              f"lip-sync correlation {metrics['lipsync_corr_head']:.3f}")
    if "psnr_head_on_bc" in metrics:
        print(f"head alone over bc.jpg: PSNR {metrics['psnr_head_on_bc']:.2f} dB")
    print(f"outputs in {os.path.abspath(args.workspace)}:")
    for name, path in metrics["outputs"].items():
        print(f"  {name:17s} {os.path.abspath(path)}")
    print(f"  {'metrics':17s} {os.path.abspath(os.path.join(args.workspace, 'metrics.json'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
