"""Evaluation of a fitted talking head: metrics, lip-sync, plots and videos with sound.

Lip-sync: the mouth openness of a frame is measured as the dark-pixel fraction of its lips
rectangle (the open mouth's interior is the darkest thing there), on rendered frames; its Pearson
correlation with the ground-truth openness is the lip-sync score. The synthetic dataset stores
the exact openness (``mouth_openness.npy``); for other datasets the same measure on the ground-truth
frames stands in for it.
"""

import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..audio import attention_windows, logmel_windows_from_file, load_feature_file
from ..audio.io import write_wav
from ..data import TalkingHeadDataset
from .metrics import pearson, psnr, region_psnr, ssim
from .trainer import TalkingHeadTrainer, check_audio_compatible, write_json
from .video import write_video

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


def evaluate(trainer: TalkingHeadTrainer, data: TalkingHeadDataset, progress: bool = True) -> Dict[str, object]:
    """Renders every item of ``data`` (held-out frames with their own audio) and scores it.

    Returns a dict with the metrics and ``renders`` (N, H, W, 3) / ``targets`` (N, H, W, 3) CPU
    float tensors for the videos.
    """
    from tqdm import tqdm

    renders, targets, times = [], [], []
    for i in tqdm(range(len(data)), desc="evaluate", disable=not progress, unit="frame"):
        start = time.perf_counter()
        renders.append(trainer.render(data, i).cpu())
        times.append(time.perf_counter() - start)
        targets.append(data.image(i))
    renders, targets = torch.stack(renders), torch.stack(targets)
    rects = data.lips_rects
    measured = torch.tensor([mouth_openness_proxy(r, rect) for r, rect in zip(renders, rects)])
    measured_gt = torch.tensor([mouth_openness_proxy(t, rect) for t, rect in zip(targets, rects)])
    exact = ground_truth_openness(data)
    reference = torch.from_numpy(exact).float() if exact is not None else measured_gt
    return {
        "frames": len(data),
        "psnr": float(np.mean([psnr(r, t) for r, t in zip(renders, targets)])),
        "ssim": float(ssim(renders, targets)),
        "mouth_psnr": float(np.mean([region_psnr(r, t, rect) for r, t, rect in zip(renders, targets, rects)])),
        "lipsync_corr": pearson(measured, reference),
        "lipsync_reference": "mouth_openness.npy" if exact is not None else "measured on ground-truth frames",
        "lipsync_corr_ground_truth_frames": pearson(measured_gt, reference) if exact is not None else 1.0,
        "render_ms_per_frame": 1000.0 * float(np.median(times)),
        "renders": renders,
        "targets": targets,
        "openness_measured": measured.tolist(),
        "openness_reference": reference.tolist(),
    }


def load_audio_features(path: str) -> torch.Tensor:
    """(N, W, C) per-video-frame audio windows from a .wav (our log-mel) or a RAD-NeRF .npy."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.endswith(".npy"):
        return load_feature_file(path)
    return logmel_windows_from_file(path)


@torch.no_grad()
def render_with_audio(trainer: TalkingHeadTrainer, data: TalkingHeadDataset, features: torch.Tensor,
                      progress: bool = True) -> List[torch.Tensor]:
    """One frame per audio window of ``features`` (N, W, C): the poses of ``data`` replayed
    forwards and backwards, the mean eye area, latent code 0."""
    from tqdm import tqdm

    n_pose = len(data)
    cycle = list(range(n_pose)) + list(range(n_pose - 2, 0, -1)) or [0]
    eye = float(data.eye_areas.mean())
    frames = []
    for i in tqdm(range(features.shape[0]), desc="render new audio", disable=not progress, unit="frame"):
        window = attention_windows(features, torch.tensor([i]))[0]
        frames.append(trainer.render(data, 0, audio=window, eye=eye, pose_index=cycle[i % len(cycle)]).cpu())
    return frames


def synthetic_new_speech(path: str, seconds: float = 6.0, seed: int = 1234) -> str:
    """Writes a fresh synthetic speech clip (not heard in training) to ``path``."""
    from ..data.speech import RATE, synthesize_speech

    speech = synthesize_speech(seconds, np.random.default_rng(seed))
    write_wav(path, speech.samples, RATE)
    return path


def plot_history(history: List[Dict[str, float]], path: str) -> str:
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
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_outputs(trainer: TalkingHeadTrainer, val_set: TalkingHeadDataset, workspace: str,
                  audio_path: Optional[str] = None, progress: bool = True,
                  extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Evaluates on ``val_set`` and writes metrics.json, loss_psnr.png, val_render.mp4,
    val_side_by_side.mp4 (GT | render) and new_audio.mp4 into ``workspace``; returns the metrics."""
    os.makedirs(workspace, exist_ok=True)
    result = evaluate(trainer, val_set, progress)
    renders, targets = result.pop("renders"), result.pop("targets")
    wav = os.path.join(val_set.root, "aud.wav")
    wav = wav if os.path.isfile(wav) else None
    offset = val_set.aud_ids[0] / FPS
    outputs = {
        "val_render": write_video(renders, os.path.join(workspace, "val_render.mp4"), FPS, wav, offset),
        "val_side_by_side": write_video(torch.cat([targets, renders], 2),
                                        os.path.join(workspace, "val_side_by_side.mp4"), FPS, wav, offset),
    }
    if audio_path is None:
        audio_path = synthetic_new_speech(os.path.join(workspace, "new_speech.wav"))
    features = load_audio_features(audio_path)
    check_audio_compatible(trainer.spec, features, f"audio {audio_path}")
    frames = render_with_audio(trainer, val_set, features, progress)
    sound = audio_path if not audio_path.endswith(".npy") else None
    outputs["new_audio"] = write_video(frames, os.path.join(workspace, "new_audio.mp4"), FPS, sound)
    outputs["plot"] = plot_history(trainer.progress.history, os.path.join(workspace, "loss_psnr.png"))
    result["outputs"] = outputs
    result["steps"] = trainer.progress.step
    if extra:
        result.update(extra)
    write_json(os.path.join(workspace, "metrics.json"), result)
    return result
