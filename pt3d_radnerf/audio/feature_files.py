"""RAD-NeRF's and ER-NeRF's precomputed audio feature files and the feature-type registry.

Every file holds one window of ASR frames per 25 fps video frame, time before channels:

    type         stored shape     ASR front end                              file names
    deepspeech   (N, 16, 29)      DeepSpeech v0.1 character logits           aud_ds.npy, aud.npy
    esperanto    (N, 16, 44)      wav2vec2-large-xlsr-53-esperanto logits    aud_eo.npy
    wav2vec      (N, 16, 32)      wav2vec2-large-960h-lv60-self logits       aud.npy
    hubert       (N, 2, 1024)     hubert-large-ls960-ft last hidden state    aud_hu.npy
    logmel       (N, 16, C)       ours: log-mel filterbank, C = n_mels (80)  (computed from aud.wav)

File names: a stem ending in ``_ds`` / ``_eo`` / ``_hu`` names its type (the training files
``aud_ds.npy`` ... and ER-NeRF's test-audio names ``<name>_eo.npy`` ...). A stem without one of
these suffixes is ambiguous: RAD-NeRF's ``process.py`` writes DeepSpeech features to ``aud.npy``,
its loader reads English wav2vec logits from ``aud.npy``, and test audio is ``<name>.npy``; the
type of such a file is inferred from its (window, width), which differ between all types.
An explicit type always wins over the name and the shape (whose fit is then checked).

RAD-NeRF permutes the arrays to (N, C, W) on load for its Conv1d; we keep the stored (N, W, C)
layout everywhere and let ``AudioNet`` transpose, so files load as-is.
"""

import os
from dataclasses import dataclass, replace
from typing import List, Optional

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


# Stem suffix -> type, as RAD-NeRF and ER-NeRF name their files (aud_ds.npy, <name>_eo.npy, ...).
FILE_SUFFIXES = {"_ds": "deepspeech", "_eo": "esperanto", "_hu": "hubert"}
# The training-feature files a dataset folder may hold, in the order a folder is searched when no
# type is asked for (RAD-NeRF's loader prefers the esperanto/deepspeech files over aud.npy).
FEATURE_FILES = ("aud_ds.npy", "aud_eo.npy", "aud.npy", "aud_hu.npy")


def file_name_type(path: str) -> Optional[str]:
    """The feature type a file's name states (``*_ds.npy`` -> "deepspeech", ``*_eo.npy`` ->
    "esperanto", ``*_hu.npy`` -> "hubert"), or None for an ambiguous name (``aud.npy``, ``<name>.npy``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return next((kind for suffix, kind in FILE_SUFFIXES.items() if stem.endswith(suffix)), None)


def types_for_shape(shape) -> List[str]:
    """Names of the ASR feature types whose stored (N, window, width) layout fits ``shape``."""
    shape = tuple(shape)
    return [t.name for t in FEATURE_TYPES.values()
            if t.name != "logmel" and len(shape) == 3 and shape[1:] == (t.window, t.width)]


def _layouts() -> str:
    return ", ".join(f"{t.name} (N, {t.window}, {t.width})" for t in FEATURE_TYPES.values() if t.name != "logmel")


def _shape_hint(shape) -> str:
    """What an unexpected array shape probably is, for error messages ('' when nothing fits)."""
    shape = tuple(shape)
    if len(shape) == 2:
        return "; (N, 16) argmax label files (RAD-NeRF's --emb mode) are not supported"
    if len(shape) == 3 and types_for_shape((shape[0], shape[2], shape[1])):
        return "; the last two axes look swapped (the files store time before channels)"
    fits = types_for_shape(shape)
    return f"; that shape is what '{fits[0]}' features have" if fits else ""


def feature_file_type(path: str, shape, kind=None) -> FeatureType:
    """The feature type of a feature file holding an array of ``shape``.

    Rules: an explicit ``kind`` wins; else a stem suffix (``_ds``/``_eo``/``_hu``) names the type;
    else (``aud.npy``, ``<name>.npy``) the type is the one whose (window, width) fits ``shape``.
    The shape must fit the type found.

    Args:
        path: the file (for the name and for messages).
        shape: the stored array's shape, e.g. (N, 16, 29).
        kind: None, a type name / ASR model id (see ``feature_type``), or a ``FeatureType``.

    Raises:
        ValueError: naming the file, its shape and the candidate types.
    """
    shape = tuple(shape)
    advice = ""
    if isinstance(kind, FeatureType) or kind is not None:
        expected = kind if isinstance(kind, FeatureType) else feature_type(kind)
        why = "(asked for)"
    elif file_name_type(path) is not None:
        expected, why = FEATURE_TYPES[file_name_type(path)], "(as its name says)"
        advice = "; pass the type explicitly if the name is wrong"
    else:
        fits = types_for_shape(shape)
        if not fits:
            raise ValueError(f"cannot infer the feature type of {path}: its array has shape {shape}, which fits "
                             f"none of {_layouts()}{_shape_hint(shape)}")
        return FEATURE_TYPES[fits[0]]  # the (window, width) pairs are distinct, so at most one fits
    if len(shape) == 3 and shape[1:] == (expected.window, expected.width):
        return expected
    raise ValueError(f"{path} holds an array of shape {shape}, but '{expected.name}' features {why} are "
                     f"stored as (N, {expected.window}, {expected.width}){_shape_hint(shape)}{advice}")


def npy_shape(path: str) -> Optional[tuple]:
    """Shape of the array in a .npy file, read from its header without loading the data (None when
    the file is not a plain numeric .npy array)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        return None
    return tuple(array.shape)


def find_feature_file(root: str, kind) -> str:
    """Path of the training features of type ``kind`` in a dataset folder.

    A file whose name states the type (``aud_ds.npy``, ``aud_eo.npy``, ``aud_hu.npy``) is taken as
    it is (``load_feature_file`` then checks its shape); the ambiguous ``aud.npy`` is taken when
    its shape fits ``kind`` (DeepSpeech (N, 16, 29) or wav2vec (N, 16, 32)).

    Raises:
        FileNotFoundError: no file of that type, naming the folder, the files looked for and the
            shape of an ``aud.npy`` that did not fit.
    """
    expected = kind if isinstance(kind, FeatureType) else feature_type(kind)
    named = [name for name in FEATURE_FILES if file_name_type(name) == expected.name]
    for name in named:
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    ambiguous = os.path.join(root, "aud.npy")
    shape = npy_shape(ambiguous) if os.path.isfile(ambiguous) else None
    if shape is not None and expected.name in types_for_shape(shape):
        return ambiguous
    looked = " or ".join(named + [f"aud.npy of shape (N, {expected.window}, {expected.width})"])
    found = f"; aud.npy there has shape {shape}" if shape is not None else ""
    raise FileNotFoundError(f"no '{expected.name}' audio features in {root}: looked for {looked}{found}")


def load_feature_file(path: str, kind=None) -> torch.Tensor:
    """Loads a RAD-NeRF / ER-NeRF audio feature .npy as float32 (N, window, width), as stored.

    Args:
        path: e.g. aud_ds.npy (N,16,29), aud_eo.npy (N,16,44), aud.npy (N,16,29 DeepSpeech or
            N,16,32 wav2vec), aud_hu.npy (N,2,1024), or test audio <name>[_ds|_eo|_hu].npy.
        kind: feature type name, ASR model id or ``FeatureType``; it wins over the file name. When
            None the type comes from the name's suffix, else from the array's shape (see
            ``feature_file_type``).

    Returns:
        (N, W, C) float32 CPU tensor (float16/float64 files are converted).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a plain .npy array, non-float dtype, a shape that fits no type or not the
            named / asked type, no frames, NaN/Inf; every message names the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio feature file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"cannot read {path} as a .npy array: {err}") from err
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"{path} must hold a single .npy array, got an .npz archive")
    expected = feature_file_type(path, array.shape, kind)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{path} must hold floating-point features of shape (N, {expected.window}, {expected.width}), "
            f"got dtype {array.dtype}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{path} holds no frames (shape {tuple(array.shape)})")
    features = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(features).all():
        raise ValueError(f"{path} contains NaN or Inf values")
    return features
