"""RAD-NeRF's precomputed audio feature files and the feature-type registry."""

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass(frozen=True)
class FeatureType:
    """How one ASR front end lays out its per-video-frame window: (window, width)."""

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


def feature_type(name: str) -> FeatureType:
    try:
        return FEATURE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown audio feature type {name!r}; known: {sorted(FEATURE_TYPES)}") from None


def check_features(features: torch.Tensor, expected: FeatureType, source: str = "audio features") -> None:
    """Raises ValueError unless ``features`` is (N, window, width) of the expected type."""
    if features.dim() != 3 or tuple(features.shape[1:]) != (expected.window, expected.width):
        raise ValueError(
            f"{source} have shape {tuple(features.shape)} but the model is configured for "
            f"'{expected.name}' features of shape (N, {expected.window}, {expected.width})"
        )


def load_feature_file(path: str, kind: Optional[str] = None) -> torch.Tensor:
    """Loads a RAD-NeRF audio feature .npy as float32 (N, window, width).

    Args:
        path: aud_ds.npy (N,16,29), aud_eo.npy (N,16,44), aud.npy (N,16,32) or aud_hu.npy (N,2,1024).
        kind: feature type name; inferred from the file name when None (aud.npy -> wav2vec).
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
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path} must hold floating-point features, got dtype {array.dtype}")
    features = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    check_features(features, expected, source=path)
    if features.shape[0] == 0:
        raise ValueError(f"{path} holds no frames")
    if not torch.isfinite(features).all():
        raise ValueError(f"{path} contains NaN or Inf values")
    return features
