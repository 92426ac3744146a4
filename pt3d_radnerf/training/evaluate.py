"""Evaluation of a fitted talking head: metrics, lip-sync, plots and videos with sound.

Lip-sync: the mouth openness of a frame is measured as the dark-pixel fraction of its lips
rectangle (the open mouth's interior is the darkest thing there), on rendered frames; its Pearson
correlation with the ground-truth openness is the lip-sync score. The synthetic dataset stores
the exact openness (``mouth_openness.npy``); for other datasets the same measure on the ground-truth
frames stands in for it.
"""

import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from ..atomic import atomic_path, remove_stale_temporaries, write_text
from ..audio import attention_windows, feature_type, load_feature_file, logmel_windows_from_file
from ..audio.io import write_wav
from ..data import TalkingHeadDataset
from .config import ModelSpec, check_audio_compatible
from .inference import HeadModel, HeadTorsoModel
from .metrics import pearson, psnr, region_psnr, ssim
from .video import VideoWriter, write_video

FPS = 25.0


def mouth_openness_proxy(image: torch.Tensor, rect: Sequence[int], dark: float = 0.3,
                         soft: float = 0.15) -> float:
    """Dark-pixel fraction (soft, in [0, 1]) of ``image`` (H, W, 3) inside ``rect`` (x0, x1, y0, y1):
    a pixel counts fully below luminance ``dark - soft`` and not at all above ``dark``."""
    x0, x1, y0, y1 = (int(v) for v in rect)
    patch = image[max(y0, 0) : y1, max(x0, 0) : x1]
    if patch.numel() == 0:
        return 0.0
    lum = patch @ torch.tensor([0.299, 0.587, 0.114], dtype=patch.dtype, device=patch.device)
    return float(((dark - lum) / soft).clamp(0.0, 1.0).mean())


def ground_truth_openness(data: TalkingHeadDataset) -> Optional[np.ndarray]:
    """Exact per-item mouth openness when the dataset has ``mouth_openness.npy`` (synthetic)."""
    path = os.path.join(data.root, "mouth_openness.npy")
    if not os.path.isfile(path):
        return None
    values = np.load(path)
    return values[np.asarray(data.img_ids)]


class _Scores:
    """Per-frame scores of one view, accumulated as frames are rendered (floats, no images)."""

    def __init__(self) -> None:
        self.psnr: List[float] = []
        self.ssim: List[float] = []
        self.mouth_psnr: List[float] = []
        self.openness: List[float] = []

    def add(self, render: torch.Tensor, target: torch.Tensor, rect: Sequence[int], full: bool) -> None:
        self.psnr.append(psnr(render, target))
        if full:
            self.ssim.append(ssim(render, target))  # the mean over frames = SSIM of the stack
            self.mouth_psnr.append(region_psnr(render, target, rect))
            self.openness.append(mouth_openness_proxy(render, rect))

    def metrics(self, suffix: str, reference: torch.Tensor) -> Dict[str, float]:
        out = {f"psnr{suffix}": float(np.mean(self.psnr))}
        if self.ssim:
            out.update({f"ssim{suffix}": float(np.mean(self.ssim)), f"mouth_psnr{suffix}": float(np.mean(self.mouth_psnr)),
                        f"lipsync_corr{suffix}": pearson(torch.tensor(self.openness), reference)})
        return out


# The views a model renders (HeadModel.views / HeadTorsoModel.views), the suffix of their metric
# names, and whether SSIM, mouth PSNR and lip-sync are scored too (else PSNR only).
VIEWS = {"frame": ("", True), "head": ("_head", True), "head_on_bc": ("_head_on_bc", False)}


def frame_description(model: Union[HeadModel, HeadTorsoModel], data: TalkingHeadDataset) -> str:
    """What the video frames (and the unsuffixed metrics) show."""
    if isinstance(model, HeadTorsoModel):
        return "head over the rendered torso over bc.jpg"
    return "head over the ground-truth torso on bc.jpg" if data.has_torso else "head over bc.jpg"

FrameSink = Callable[[int, Dict[str, torch.Tensor], torch.Tensor], None]


@torch.no_grad()
def evaluate(model: Union[HeadModel, HeadTorsoModel], data: TalkingHeadDataset, progress: bool = True,
             on_frame: Optional[FrameSink] = None) -> Dict[str, object]:
    """Renders every item of ``data`` (held-out frames with their own audio) and scores it as it
    goes: no render or target is kept (``on_frame(index, views, target)`` gets each frame's
    ``model.views`` and (H, W, 3) ground truth, e.g. to encode them into videos).

    Metrics of the video frame are unsuffixed (``psnr``, ``ssim``, ``mouth_psnr``,
    ``lipsync_corr``); a :class:`HeadTorsoModel` adds the head over the ground-truth torso
    (``psnr_head``, ...: when the folder has torso images) and the head alone over bc.jpg
    (``psnr_head_on_bc``). ``frame_render`` says what the frames show.
    """
    from tqdm import tqdm

    scores: Dict[str, _Scores] = {}
    openness_gt, times = [], []
    data.prefetch(0)
    for i in tqdm(range(len(data)), desc="evaluate", disable=not progress, unit="frame"):
        if i + 1 < len(data):
            data.prefetch(i + 1)
        start = time.perf_counter()
        views = {k: v.cpu() for k, v in model.views(data, i).items()}
        times.append(time.perf_counter() - start)
        target, rect = data.image(i), data.lips_rects[i]
        for name, render in views.items():
            scores.setdefault(name, _Scores()).add(render, target, rect, VIEWS[name][1])
        openness_gt.append(mouth_openness_proxy(target, rect))
        if on_frame is not None:
            on_frame(i, views, target)
    measured_gt = torch.tensor(openness_gt)
    exact = ground_truth_openness(data)
    reference = torch.from_numpy(exact).float() if exact is not None else measured_gt
    result: Dict[str, object] = {"frames": len(data)}
    for name, view in scores.items():
        result.update(view.metrics(VIEWS[name][0], reference))
    result.update({
        "frame_render": frame_description(model, data),
        "lipsync_reference": "mouth_openness.npy" if exact is not None else "measured on ground-truth frames",
        "lipsync_corr_ground_truth_frames": pearson(measured_gt, reference) if exact is not None else 1.0,
        "render_ms_per_frame": 1000.0 * float(np.median(times)),
        "openness_measured": scores["frame"].openness,
        "openness_reference": reference.tolist(),
    })
    return result


@dataclass(frozen=True)
class NewAudio:
    """The speech that drives ``new_audio.mp4``: ``features`` (N, W, C) windows, the ``sound``
    file muxed in (None: silent) from ``offset_s`` seconds, and a ``source`` description."""

    features: torch.Tensor
    sound: Optional[str]
    offset_s: float
    source: str


def load_audio_features(path: str, kind: Optional[str] = None) -> torch.Tensor:
    """(N, W, C) per-video-frame audio windows of ``path``: a RAD-NeRF feature ``.npy`` (type
    ``kind``, or inferred by :func:`pt3d_radnerf.audio.load_feature_file`), or any audio file
    ffmpeg reads, turned into our log-mel windows (``kind`` None or "logmel")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--audio file not found: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"--audio file is not readable: {path}")
    if path.endswith(".npy"):
        return load_feature_file(path, kind)
    if kind is not None and feature_type(kind).name != "logmel":
        raise ValueError(f"--audio {path} is an audio file, from which only logmel features can be "
                         f"computed; --audio-type {kind} needs that ASR's precomputed feature .npy")
    try:
        return logmel_windows_from_file(path)
    except Exception as err:
        raise ValueError(f"cannot read --audio {path} as audio: {err}") from err


def resolve_new_audio(spec: ModelSpec, val_set: TalkingHeadDataset, workspace: str,
                      audio_path: Optional[str] = None, audio_type: Optional[str] = None) -> NewAudio:
    """The new speech for ``new_audio.mp4``, loaded and checked against ``spec`` (call it before
    training: a mismatch is an error at start, not after the run).

    ``audio_path`` given: its features (``audio_type`` as for :func:`load_audio_features`).
    Otherwise a default that fits the model: a fresh synthetic speech clip (written to
    ``workspace/new_speech.wav``) when the model takes our 16 x 80 log-mel windows, else the
    held-out split's own feature windows (with the dataset's ``aud.wav`` from the split's start).
    """
    if audio_path is not None:
        features = load_audio_features(audio_path, audio_type)
        check_audio_compatible(spec, features, f"--audio {audio_path}")
        sound = None if audio_path.endswith(".npy") else audio_path
        return NewAudio(features, sound, 0.0, audio_path)
    logmel = feature_type("logmel")
    if (spec.audio_window, spec.audio_width) == (logmel.window, logmel.width):
        wav = synthetic_new_speech(os.path.join(workspace, "new_speech.wav"))
        return NewAudio(load_audio_features(wav), wav, 0.0, "synthetic speech (new_speech.wav)")
    features = val_set.audio_features[val_set.aud_index]
    check_audio_compatible(spec, features, f"held-out audio features of {val_set.root}")
    wav = os.path.join(val_set.root, "aud.wav")
    return NewAudio(features, wav if os.path.isfile(wav) else None, val_set.aud_ids[0] / FPS,
                    "the held-out split's own audio features")


def audio_frame(model: Union[HeadModel, HeadTorsoModel], data: TalkingHeadDataset, features: torch.Tensor,
                index: int) -> torch.Tensor:
    """(H, W, 3) frame ``index`` of speech ``features`` (N, W, C): its audio window, the pose of
    ``data`` replayed forwards and backwards (0, 1, ..., n-1, n-2, ..., 1, 0, ...), the mean eye
    area, latent code 0. A function of ``index`` alone, so frames can be rendered in any order
    or by different processes."""
    n_pose = len(data)
    k = index % max(2 * n_pose - 2, 1)
    pose = k if k < n_pose else 2 * n_pose - 2 - k
    window = attention_windows(features, torch.tensor([index]))[0]
    with torch.no_grad():
        return model.render(data, 0, audio=window, eye=float(data.eye.mean()), pose_index=pose).cpu()


def render_with_audio(model: Union[HeadModel, HeadTorsoModel], data: TalkingHeadDataset,
                      features: torch.Tensor, progress: bool = True) -> Iterator[torch.Tensor]:
    """Yields the :func:`audio_frame` of every audio window of ``features`` (N, W, C), in order,
    rendered when asked for."""
    from tqdm import tqdm

    for i in tqdm(range(features.shape[0]), desc="render new audio", disable=not progress, unit="frame"):
        yield audio_frame(model, data, features, i)


def synthetic_new_speech(path: str, seconds: float = 6.0, seed: int = 1234) -> str:
    """Writes a fresh synthetic speech clip (not heard in training) to ``path`` (atomically)."""
    from ..data.speech import RATE, synthesize_speech

    speech = synthesize_speech(seconds, np.random.default_rng(seed))
    with atomic_path(path) as tmp:
        write_wav(tmp, speech.samples, RATE)
    return path


def plot_history(history: List[Dict[str, Any]], path: str) -> str:
    """Training loss, training PSNR and validation PSNR against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h]
    val = [h for h in history if "val_psnr" in h]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.semilogy([h["step"] for h in train], [h["loss"] for h in train])
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_psnr.plot([h["step"] for h in train], [h["psnr"] for h in train], label="train (ray batch)", alpha=0.6)
    if val:
        ax_psnr.plot([h["step"] for h in val], [h["val_psnr"] for h in val], "o-", label="validation")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB)", title="PSNR")
    ax_psnr.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


# Everything one evaluation writes; metrics.json first in the list: it is removed first and
# written last, so a metrics.json never sits next to another run's videos.
OUTPUT_FILES = ("metrics.json", "val_render.mp4", "val_side_by_side.mp4", "new_audio.mp4", "loss_psnr.png")


def remove_previous_outputs(workspace: str) -> None:
    """Deletes the previous evaluation's outputs (and stale temporaries) from ``workspace``."""
    for name in OUTPUT_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(workspace, name))
    remove_stale_temporaries(workspace)


def write_outputs(model: Union[HeadModel, HeadTorsoModel], val_set: TalkingHeadDataset, workspace: str,
                  new_audio: NewAudio, history: List[Dict[str, Any]], steps: int, progress: bool = True,
                  extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Evaluates ``model`` on ``val_set`` and writes :data:`OUTPUT_FILES` into ``workspace``:
    val_render.mp4, val_side_by_side.mp4 (GT | render), new_audio.mp4 (driven by ``new_audio``),
    loss_psnr.png (of ``history``) and, last, metrics.json; the previous run's outputs are removed
    first. Frames are encoded as they are rendered (memory does not grow with the clip's length).
    Returns the metrics."""
    os.makedirs(workspace, exist_ok=True)
    remove_previous_outputs(workspace)
    wav = os.path.join(val_set.root, "aud.wav")
    wav = wav if os.path.isfile(wav) else None
    offset = val_set.aud_ids[0] / FPS
    outputs = {name: os.path.join(workspace, f"{name}.mp4") for name in ("val_render", "val_side_by_side")}
    with VideoWriter(outputs["val_render"], FPS, wav, offset) as render_video, \
            VideoWriter(outputs["val_side_by_side"], FPS, wav, offset) as side_video:

        def encode(index: int, views: Dict[str, torch.Tensor], target: torch.Tensor) -> None:
            render_video.append(views["frame"])
            side_video.append(torch.cat([target, views["frame"]], 1))

        result = evaluate(model, val_set, progress, encode)
    frames = render_with_audio(model, val_set, new_audio.features, progress)
    outputs["new_audio"] = write_video(frames, os.path.join(workspace, "new_audio.mp4"), FPS, new_audio.sound,
                                       new_audio.offset_s)
    outputs["plot"] = plot_history(history, os.path.join(workspace, "loss_psnr.png"))
    result["outputs"] = outputs
    result["new_audio_source"] = new_audio.source
    result["steps"] = steps
    if extra:
        result.update(extra)
    write_text(os.path.join(workspace, "metrics.json"), json.dumps(result, indent=2))
    return result
