"""RAD-NeRF's precomputed audio feature files and the feature-type registry.

Every file holds one window of ASR frames per 25 fps video frame, time before channels:

    file         type         stored shape     ASR front end
    aud_ds.npy   deepspeech   (N, 16, 29)      DeepSpeech v0.1 character logits
    aud_eo.npy   esperanto    (N, 16, 44)      wav2vec2-large-xlsr-53-esperanto CTC logits
    aud.npy      wav2vec      (N, 16, 32)      wav2vec2-large-960h-lv60-self CTC logits
    aud_hu.npy   hubert       (N, 2, 1024)     hubert-large-ls960-ft last hidden state
    (computed)   logmel       (N, 16, C)       ours: log-mel filterbank, C = n_mels (80 default)

RAD-NeRF permutes them to (N, C, W) on load for its Conv1d; we keep the stored (N, W, C) layout
everywhere and let ``AudioNet`` transpose, so files load as-is.
"""

import os
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch


@dataclass(frozen=True)
class FeatureType:
    """How one ASR front end lays out its per-video-frame window: (window W, width C)."""

    name: str
    window: int
    width: int
    file_name: Optional[str]


FEATURE_TYPES = {
    "deepspeech": FeatureType("deepspeech", 16, 29, "aud_ds.npy"),
    "esperanto": FeatureType("esperanto", 16, 44, "aud_eo.npy"),
    "wav2vec": FeatureType("wav2vec", 16, 32, "aud.npy"),
    "hubert": FeatureType("hubert", 2, 1024, "aud_hu.npy"),
    "logmel": FeatureType("logmel", 16, 80, None),  # ours, computed from aud.wav
}

# RAD-NeRF / ER-NeRF pick the input width by substring of --asr_model (e.g. the Hugging Face id
# "cpierse/wav2vec2-large-xlsr-53-esperanto"); checked in this order because that id also
# contains "wav2vec".
_ASR_SUBSTRINGS = ("esperanto", "deepspeech", "hubert", "logmel", "wav2vec")


def feature_type(name: str, width: Optional[int] = None) -> FeatureType:
    """Resolves a feature type from our name or a RAD-NeRF ``--asr_model`` string.

    Args:
        name: "deepspeech", "esperanto", "wav2vec", "hubert", "logmel", or an ASR model id that
            contains one of them (e.g. "facebook/hubert-large-ls960-ft").
        width: channel count C for "logmel" (its number of mel bands); the ASR types have a fixed
            width, so a different value raises.

    Raises:
        ValueError: unknown name, or a width the type cannot have.
    """
    if not isinstance(name, str):
        raise TypeError(f"feature type name must be a str, got {type(name).__name__}")
    key = name if name in FEATURE_TYPES else next((k for k in _ASR_SUBSTRINGS if k in name.lower()), None)
    if key is None:
        raise ValueError(f"unknown audio feature type {name!r}; known: {sorted(FEATURE_TYPES)}")
    kind = FEATURE_TYPES[key]
    if width is None or width == kind.width:
        return kind
    if key != "logmel":
        raise ValueError(f"'{key}' audio features are {kind.width}-d, got width={width}")
    if int(width) < 1:
        raise ValueError(f"logmel width (n_mels) must be >= 1, got {width}")
    return replace(kind, width=int(width))


def _types_with_width(width: int):
    return [t.name for t in FEATURE_TYPES.values() if t.width == width and t.name != "logmel"]


def check_features(features: torch.Tensor, expected: FeatureType, source: str = "audio features",
                   ndim: int = 3) -> None:
    """Raises ValueError unless ``features`` is (..., window, width) of the expected type.

    Args:
        features: (N, W, C) per-frame windows (``ndim=3``) or (B, 8, W, C) attention windows
            (``ndim=4``).
        expected: the configured type; the message names it and, when the given width belongs
            to another known type, that type too (the classic train/test ``asr_model`` mix-up).
        source: what to call the tensor in the message (e.g. the file path).
    """
    shape = tuple(features.shape)
    want = (expected.window, expected.width)
    if features.dim() == ndim and shape[-2:] == want:
        return
    lead = "N" if ndim == 3 else "B, 8" if ndim == 4 else ", ".join("?" * (ndim - 2))
    msg = (f"{source} have shape {shape} but the model is configured for '{expected.name}' features "
           f"of shape ({lead}, {expected.window}, {expected.width})")
    if features.dim() == ndim:
        if shape[-2:] == want[::-1]:
            msg += "; the last two axes look swapped (RAD-NeRF files store time before channels)"
        else:
            others = _types_with_width(shape[-1])
            if others:
                msg += f"; width {shape[-1]} is what '{others[0]}' features have"
    elif features.dim() == ndim - 1 and ndim == 3:
        msg += "; (N, 16) argmax label files (RAD-NeRF's --emb mode) are not supported"
    raise ValueError(msg)


def load_feature_file(path: str, kind: Optional[str] = None) -> torch.Tensor:
    """Loads a RAD-NeRF audio feature .npy as float32 (N, window, width), as stored.

    Args:
        path: aud_ds.npy (N,16,29), aud_eo.npy (N,16,44), aud.npy (N,16,32) or aud_hu.npy (N,2,1024).
        kind: feature type name (or ASR model id); inferred from the file name when None
            (aud.npy -> wav2vec, as RAD-NeRF's default English wav2vec2).

    Returns:
        (N, W, C) float32 CPU tensor (float16/float64 files are converted).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a plain .npy array, non-float dtype, wrong shape, no frames, NaN/Inf;
            every message names the file and the expected shape.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio feature file not found: {path}")
    if kind is None:
        base = os.path.basename(path)
        matches = [t.name for t in FEATURE_TYPES.values() if t.file_name == base]
        if not matches:
            raise ValueError(f"cannot infer the feature type of {path}; pass kind= one of {sorted(FEATURE_TYPES)}")
        kind = matches[0]
    expected = feature_type(kind)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"cannot read {path} as a .npy array: {err}") from err
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise ValueError(f"{path} must hold a single .npy array, got {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{path} must hold floating-point features of shape (N, {expected.window}, {expected.width}), "
            f"got dtype {array.dtype}"
        )
    features = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    check_features(features, expected, source=path)
    if features.shape[0] == 0:
        raise ValueError(f"{path} holds no frames (shape {tuple(features.shape)})")
    if not torch.isfinite(features).all():
        raise ValueError(f"{path} contains NaN or Inf values")
    return features
