"""Batch rendering: a fitted talking head driven by a list of speech clips, one MP4 per clip.

Each clip (an audio file ffmpeg reads, or a RAD-NeRF feature ``.npy``) becomes ``OUT/<clip
name>.mp4`` with the clip's sound muxed in (``.npy`` clips: silent); frames replay the dataset's
poses (``--data``, ``--split``) forwards and backwards, as ``new_audio.mp4`` of
``fit_talking_head.py``. Videos are written atomically, so a clip whose MP4 exists is complete:
a re-run (e.g. after the job was killed) skips it.

Under torchrun the frames of each clip are split across the processes (strided) and rank 0
reassembles them in order and writes the video; only rank 0 writes. Examples:

    python examples/render_talking_head.py --ckpt ws/checkpoints/model_0020000.pth --audio a.wav b.npy --out renders
    torchrun --nproc_per_node 8 examples/render_talking_head.py --ckpt CKPT --audio clips/*.wav --out renders
"""

import argparse
import os
import sys

import torch
from tqdm import tqdm

from pt3d_radnerf.atomic import remove_stale_temporaries
from pt3d_radnerf.audio import FEATURE_TYPES
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import ensure_synthetic
from pt3d_radnerf.training import distributed, load_model
from pt3d_radnerf.training.evaluate import FPS, audio_frame, resolve_new_audio
from pt3d_radnerf.training.video import VideoWriter, to_uint8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a head (model_*.pth) or torso-stage (torso_*.pth) checkpoint")
    p.add_argument("--audio", nargs="+", required=True, metavar="CLIP",
                   help="speech clips: audio files and/or RAD-NeRF feature .npy files")
    p.add_argument("--audio-type", choices=sorted(FEATURE_TYPES),
                   help="feature type of the .npy clips (default: inferred from each file)")
    p.add_argument("--out", required=True, help="output folder (one <clip name>.mp4 per clip)")
    p.add_argument("--data", help="the RAD-NeRF dataset folder the checkpoint was trained on: its poses and "
                                  "background drive the frames (default: the built-in synthetic head)")
    p.add_argument("--split", default="val", choices=("train", "val"), help="the dataset split of the poses")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process (default: the cores shared by the node's processes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = distributed.default_threads()
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    names = [clip_name(a) for a in args.audio]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        p.error(f"--audio: several clips would write the same video {[n + '.mp4' for n in twice]}: "
                f"rename one of them")
    return args


def clip_name(path: str) -> str:
    """The output name of clip ``path``: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def prepare(args, root=None):
    """Loads the model, the pose dataset and every clip (all checked before anything renders);
    returns (model, data, [(name, NewAudio)]). Rank 0 makes the synthetic dataset if needed."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data folder not found: {args.data}")
    root = root or args.data or ensure_synthetic()
    model = load_model(args.ckpt, args.device)
    data = TalkingHeadDataset(root, args.split, cache_size=64)
    clips = [(clip_name(path), resolve_new_audio(model.spec, data, args.out, path, args.audio_type))
             for path in args.audio]
    return model, data, clips


def render_clip(model, data: TalkingHeadDataset, audio, path: str, progress: bool) -> None:
    """Renders every frame of one clip (split across the processes) and, on rank 0, encodes them
    in order into ``path`` with the clip's sound."""
    count = audio.features.shape[0]
    frames = distributed.gather_frames(
        lambda i: torch.from_numpy(to_uint8(audio_frame(model, data, audio.features, i))), count,
        (data.height, data.width, 3))
    if not distributed.is_main():
        for _ in frames:  # every round is a collective
            pass
        return
    with VideoWriter(path, FPS, audio.sound, audio.offset_s) as video:
        for frame in tqdm(frames, total=count, desc=os.path.basename(path), disable=not progress, unit="frame"):
            video.append(frame.numpy())


def run(args) -> int:
    torch.set_num_threads(args.threads)
    prepared = distributed.prepare_everywhere(lambda root: prepare(args, root), lambda p: p[1].root,
                                               "render_talking_head.py")
    if prepared is None:
        return 2
    model, data, clips = prepared
    main = distributed.is_main()
    todo = None
    if main:
        os.makedirs(args.out, exist_ok=True)
        remove_stale_temporaries(args.out)  # what a killed run left
        todo = [name for name, _ in clips if not os.path.isfile(os.path.join(args.out, f"{name}.mp4"))]
        for name, _ in clips:
            if name not in todo:
                print(f"{name}.mp4 exists (complete: videos are written atomically): skipped")
    todo = distributed.broadcast_object(todo)
    for name, audio in clips:
        if name in todo:
            render_clip(model, data, audio, os.path.join(args.out, f"{name}.mp4"), main and not args.no_progress)
    if main:
        print(f"{len(todo)} clip(s) rendered, {len(clips) - len(todo)} skipped, by {distributed.world_size()} "
              f"process(es): {os.path.abspath(args.out)}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    joined_here = distributed.world_size() == 1  # not called inside a running job (tests)
    try:
        args.device = distributed.init_from_env(args.device)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"render_talking_head.py: error: {err}", file=sys.stderr)
        return 2
    try:
        return run(args)
    finally:
        if joined_here:
            distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
