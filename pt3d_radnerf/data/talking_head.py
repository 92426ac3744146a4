"""RAD-NeRF dataset folders as PyTorch3D cameras, images, landmarks regions and audio windows.

Folder layout (as written by RAD-NeRF's / ER-NeRF's preprocessing, and by our synthetic generator):

    transforms_train.json / transforms_val.json   focal_len (or fl_x/fl_y), cx, cy, [w, h], frames
    gt_imgs/<img_id>.jpg     target frames          bc.jpg      static background (H, W)
    ori_imgs/<img_id>.lms    68 landmarks "x y"     aud.wav     16 kHz speech
    aud_ds.npy | aud_eo.npy | aud.npy | aud_hu.npy  optional precomputed ASR features
    au.csv                   OpenFace action units (ER-NeRF's eye signal, column " AU45_r")
    torso_imgs/<img_id>.png  optional RGBA neck + torso, head removed (see :mod:`.torso`)
    parsing/<img_id>.png     optional face parsing: head red, neck green, torso blue (:mod:`.parsing`)

Everything a split references is checked when the dataset is built, not when a frame is first
drawn, and every error names the file and, for per-frame data, the frame (its position in the
json's ``frames`` list and its ``img_id``): the json's fields and types, finite 4x4 poses, that
each ``gt_imgs/<img_id>.jpg`` (and ``torso_imgs/<img_id>.png`` with an alpha channel, and
``parsing/<img_id>.png``, when the folder has them) exists with the split's size (read from the headers, nothing is
decoded), landmarks inside the image, ``bc.jpg``'s size, the ``aud_id`` range, and ``au.csv``.

Audio/frame count mismatch: audio features are indexed by each frame's ``aud_id``. If the
features are short by at most ``AUDIO_SLACK`` frames (rounding of the audio length), the index
is clamped to the last window; a larger shortfall raises ValueError.
"""

import csv
import json
import math
import os
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..audio import (FEATURE_FILES, attention_windows, feature_type, find_feature_file, load_feature_file,
                     logmel_windows_from_file)
from .cameras import NGP_OFFSET, NGP_SCALE, nerf_matrix_to_ngp, radnerf_cameras
from .landmarks import eye_area, lips_rect, lower_face_rect, read_lms
from .parsing import PARSING_FOLDER, decode_head_mask, parsing_path
from .torso import TORSO_FOLDER, alpha_over, convert_poses, decode_rgba, torso_header, torso_path

FPS = 25
AUDIO_SLACK = 2
EYE_SOURCES = ("landmarks", "au")
AU45_COLUMN = " AU45_r"  # OpenFace writes its csv header with a space after each comma


def decode_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file (grey expanded, alpha dropped); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except Exception as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err


def read_image(path: str) -> torch.Tensor:
    """(H, W, 3) float32 in [0, 1]; errors name the file."""
    return torch.from_numpy(decode_image(path)).float() / 255.0


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


class Transforms(NamedTuple):
    """A checked ``transforms_<split>.json``: intrinsics in pixels, per-frame ids and poses."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    img_ids: List[int]
    aud_ids: List[int]  # the frame's aud_id, its img_id when absent (as RAD-NeRF)
    poses: torch.Tensor  # (N, 4, 4) float64 OpenGL camera-to-world, as stored


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_transforms(path: str) -> Transforms:
    """Reads and checks a RAD-NeRF ``transforms_<split>.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON, a missing or non-numeric ``cx``/``cy``/``focal_len``
            (``fl_x``/``fl_y``)/``w``/``h``, fps other than 25, no frames, or a frame without an
            integer ``img_id`` >= 0, with a non-integer or negative ``aud_id``, or whose
            ``transform_matrix`` is missing, not 4x4 numbers, or not finite; per-frame messages
            name the frame and its img_id.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset split file not found: {path}")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    if "fps" in meta and meta["fps"] != FPS:
        raise ValueError(f"{path}: fps is {meta['fps']!r}, but RAD-NeRF data must be {FPS} fps")

    def number(*keys, positive=False):
        key = next((k for k in keys if k in meta), None)
        if key is None:
            raise ValueError(f"{path} lacks {' / '.join(repr(k) for k in keys)}; need cx, cy and focal_len "
                             f"(or fl_x and fl_y) as numbers")
        if not _is_number(meta[key]) or (positive and meta[key] <= 0):
            raise ValueError(f"{path}: {key!r} must be a finite{' positive' if positive else ''} number, "
                             f"got {meta[key]!r}")
        return float(meta[key])

    cx, cy = number("cx"), number("cy")
    fx, fy = number("fl_x", "focal_len", positive=True), number("fl_y", "focal_len", positive=True)
    size = {}
    for key, default in (("w", int(cx) * 2), ("h", int(cy) * 2)):  # RAD-NeRF: W = int(cx) * 2
        value = meta.get(key, default)
        if not _is_number(value) or value != int(value) or value <= 0:
            raise ValueError(f"{path}: {key!r} must be a positive integer, got {value!r}")
        size[key] = int(value)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path} must list its frames in a non-empty 'frames' array, got {frames!r:.80}")

    img_ids, aud_ids, poses = [], [], np.empty((len(frames), 4, 4))
    for k, frame in enumerate(frames):
        where = f"{path}: frame {k}"
        if not isinstance(frame, dict):
            raise ValueError(f"{where} must be a JSON object, got {frame!r:.80}")
        if "img_id" not in frame:
            raise ValueError(f"{where} has no 'img_id'")
        img_id = frame["img_id"]
        if not _is_index(img_id) or img_id < 0:
            raise ValueError(f"{where}: 'img_id' must be an integer >= 0 (gt_imgs/<img_id>.jpg), got {img_id!r}")
        where = f"{path}: frame {k} (img_id {img_id})"
        aud_id = frame.get("aud_id", img_id)
        if not _is_index(aud_id) or aud_id < 0:
            raise ValueError(f"{where}: 'aud_id' must be an integer >= 0, got {aud_id!r}")
        if "transform_matrix" not in frame:
            raise ValueError(f"{where} has no 'transform_matrix'")
        matrix = frame["transform_matrix"]
        if not (isinstance(matrix, list) and len(matrix) == 4
                and all(isinstance(row, list) and len(row) == 4 for row in matrix)):
            raise ValueError(f"{where}: 'transform_matrix' must be 4 rows of 4 numbers, got {matrix!r:.120}")
        if not all(_is_number(v) for row in matrix for v in row):
            raise ValueError(f"{where}: 'transform_matrix' must hold finite numbers, got {matrix!r:.200}")
        img_ids.append(img_id)
        aud_ids.append(aud_id)
        poses[k] = matrix
    return Transforms(fx, fy, cx, cy, size["w"], size["h"], img_ids, aud_ids, torch.from_numpy(poses))


def read_au45(path: str, img_ids: Sequence[int], json_path: str = "") -> torch.Tensor:
    """ER-NeRF's eye signal: OpenFace's AU45 (blink) intensity clipped to [0, 2] / 2, per frame.

    Row ``img_id`` of ``au.csv`` (one row per video frame, in order) belongs to that frame, as
    ER-NeRF indexes it. The column is ``" AU45_r"`` as OpenFace writes it (``"AU45_r"`` also works).

    Returns:
        (len(img_ids),) float32 in [0, 1].

    Raises:
        FileNotFoundError: no au.csv; ValueError: no AU45_r column, a non-numeric value, or fewer
        rows than a frame's img_id needs (naming the file, the column and the frame).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"eye_source='au' needs OpenFace's action units in {path} (column "
                                f"{AU45_COLUMN!r}), which does not exist")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [name.strip() for name in rows[0]] if rows else []
    if AU45_COLUMN.strip() not in header:
        raise ValueError(f"{path} has no {AU45_COLUMN!r} column (OpenFace's AU45 intensity); "
                         f"columns: {header[:12]}{' ...' if len(header) > 12 else ''}")
    col = header.index(AU45_COLUMN.strip())
    values = []
    for r, row in enumerate(rows[1:]):
        try:
            value = float(row[col])
        except (IndexError, ValueError):
            raise ValueError(f"{path}: row {r} of column {AU45_COLUMN!r} is not a number: "
                             f"{row[col] if col < len(row) else '(missing)'!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{path}: row {r} of column {AU45_COLUMN!r} is {value}")
        values.append(value)
    for k, img_id in enumerate(img_ids):
        if img_id >= len(values):
            raise ValueError(f"{path} has {len(values)} rows of {AU45_COLUMN!r} but frame {k} of {json_path} "
                             f"has img_id {img_id} (one row per video frame is needed)")
    au = torch.tensor(values, dtype=torch.float32)[torch.as_tensor(list(img_ids), dtype=torch.long)]
    return au.clamp(0.0, 2.0) / 2.0


class TalkingHeadDataset(torch.utils.data.Dataset):
    """One split of a RAD-NeRF talking-head folder.

    Args:
        root: dataset folder.
        split: "train" or "val" (reads transforms_<split>.json).
        audio: None = auto (the first of aud_ds.npy, aud_eo.npy, aud.npy, aud_hu.npy present, its
            type from its name or shape; else log-mel of aud.wav); a feature type name
            ("deepspeech", "esperanto", "wav2vec", "hubert", "logmel"; for deepspeech an
            ``aud.npy`` of shape (N, 16, 29) is found too); a path to a .npy; or a (N, W, C) tensor.
        eye_source: "landmarks" (RAD-NeRF: both eyes' landmark polygon area, % of the image) or
            "au" (ER-NeRF: au.csv's AU45 clipped to [0, 2] / 2).
        torso: use ``torso_imgs/``: None = when the folder exists, True = required, False = ignore it.
        cache_size: decoded images kept in memory (LRU, as uint8; as many torso images and head
            masks again when the folder has them); frames are never all preloaded.
        prefetch_workers: threads that decode the images ``prefetch`` asks for (0: no prefetch).
        scale, offset: RAD-NeRF's ``nerf_matrix_to_ngp`` pose scale and offset.

    Attributes: ``img_ids``/``aud_ids`` (N lists), ``aud_index`` (N,) rows of ``audio_features``
    (N_audio, W, C), ``eye`` (N,), ``R`` (N, 3, 3) / ``T`` (N, 3), ``c2w`` (N, 4, 4) float64 in
    RAD-NeRF's world, ``torso_poses`` (N, 6) float32 (its ``convert_poses``), ``has_torso``,
    ``has_parsing`` (the folder has ``parsing/``; then ``head_mask(i)`` is the (H, W) bool head class),
    ``lower_face_rects`` and ``lips_rects`` (N lists of (x0, x1, y0, y1)), ``width``/``height``.

    Torso (RAD-NeRF): ``torso_rgba(i)`` the frame's GT torso, ``torso_background(i)`` it composited
    over ``bc.jpg``; ``head_background(i)`` is what the head is trained and evaluated head-only
    over: the latter when the folder has torso images, else ``bc.jpg``.

    Item ``i`` is a dict: ``image`` (H, W, 3) float32, ``index`` (i), ``img_id``, ``aud_index``,
    ``R`` (3, 3) / ``T`` (3,) PyTorch3D extrinsics, ``eye`` (), ``lower_face_rect`` and
    ``lips_rect`` (x0, x1, y0, y1), ``torso_pose`` (6,); it holds no unpicklable state, so a
    ``DataLoader`` with workers can decode images in other processes.
    """

    def __init__(self, root: str, split: str = "train",
                 audio: Union[None, str, torch.Tensor] = None, eye_source: str = "landmarks",
                 torso: Optional[bool] = None, cache_size: int = 256, prefetch_workers: int = 1,
                 scale: float = NGP_SCALE, offset: Sequence[float] = NGP_OFFSET):
        if eye_source not in EYE_SOURCES:
            raise ValueError(f"eye_source must be one of {EYE_SOURCES}, got {eye_source!r}")
        if int(cache_size) != cache_size or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        if int(prefetch_workers) != prefetch_workers or prefetch_workers < 0:
            raise ValueError(f"prefetch_workers must be an integer >= 0, got {prefetch_workers!r}")
        if torso not in (None, True, False):
            raise ValueError(f"torso must be None (use torso_imgs/ when present), True or False, got {torso!r}")
        self.root, self.split, self.eye_source = root, split, eye_source
        self.cache_size, self.prefetch_workers = int(cache_size), int(prefetch_workers)
        meta_path = os.path.join(root, f"transforms_{split}.json")
        meta = read_transforms(meta_path)
        self.fx, self.fy, self.cx, self.cy = meta.fx, meta.fy, meta.cx, meta.cy
        self.width, self.height = meta.width, meta.height
        self.img_ids, self.aud_ids = meta.img_ids, meta.aud_ids
        self._check_images(meta_path)
        torso_folder = os.path.join(root, TORSO_FOLDER)
        if torso and not os.path.isdir(torso_folder):
            raise FileNotFoundError(f"torso=True needs RAD-NeRF's RGBA torso images in {torso_folder}, "
                                    f"which does not exist")
        self.has_torso = torso is not False and os.path.isdir(torso_folder)
        if self.has_torso:
            self._check_frame_pngs(TORSO_FOLDER, meta_path, "torso image", need_alpha=True,
                                   hint="; pass torso=False to train without the ground-truth torso")
        self.has_parsing = os.path.isdir(os.path.join(root, PARSING_FOLDER))
        if self.has_parsing:
            self._check_frame_pngs(PARSING_FOLDER, meta_path, "parsing image")

        self.c2w = nerf_matrix_to_ngp(meta.poses, scale, offset)  # (N, 4, 4) OpenCV c2w, RAD-NeRF world
        self._all_cameras = radnerf_cameras(meta.poses, self.fx, self.fy, self.cx, self.cy, self.width,
                                            self.height, scale, offset)
        self.R, self.T = self._all_cameras.R, self._all_cameras.T
        self.torso_poses = convert_poses(self.c2w).float()  # (N, 6)

        lms = [self._landmarks(k, meta_path) for k in range(len(self.img_ids))]
        self.lower_face_rects = [lower_face_rect(l) for l in lms]
        self.lips_rects = [lips_rect(l, self.width, self.height) for l in lms]
        if eye_source == "au":
            self.eye = read_au45(os.path.join(root, "au.csv"), self.img_ids, meta_path)
        else:
            self.eye = torch.tensor([eye_area(l, self.width, self.height) for l in lms], dtype=torch.float32)

        self.audio_features, self.audio_source = self._load_audio(audio)
        n_aud = self.audio_features.shape[0]
        for k, a in enumerate(self.aud_ids):
            if a >= n_aud + AUDIO_SLACK:
                raise ValueError(f"{meta_path}: frame {k} (img_id {self.img_ids[k]}) has aud_id {a}, but the "
                                 f"audio features ({self.audio_source}) cover {n_aud} frames (aud_id may "
                                 f"exceed the last by at most {AUDIO_SLACK}, the rounding of the audio length)")
        self.aud_index = torch.tensor([min(a, n_aud - 1) for a in self.aud_ids])
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()  # img_id -> (H, W, 3) uint8
        self._pending: Dict[int, Future] = {}
        self._torso_cache: "OrderedDict[int, np.ndarray]" = OrderedDict()  # img_id -> (H, W, 4) uint8
        self._torso_pending: Dict[int, Future] = {}
        self._parsing_cache: "OrderedDict[int, np.ndarray]" = OrderedDict()  # img_id -> (H, W) bool head mask
        self._parsing_pending: Dict[int, Future] = {}
        self._executor: Optional[ThreadPoolExecutor] = None
        self._background: Optional[torch.Tensor] = None

    # ---- checks at load -------------------------------------------------------------------------
    def _check_images(self, meta_path: str) -> None:
        """Every referenced gt_imgs/<img_id>.jpg exists with size (h, w); bc.jpg too (headers only)."""
        folder = os.path.join(self.root, "gt_imgs")
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        want = (self.height, self.width)
        for k, img_id in enumerate(self.img_ids):
            path = os.path.join(folder, f"{img_id}.jpg")
            if f"{img_id}.jpg" not in present:
                missing = sum(f"{i}.jpg" not in present for i in self.img_ids)
                raise FileNotFoundError(f"image not found: {path} (frame {k} of {meta_path}; {missing} of "
                                        f"{len(self.img_ids)} referenced images are missing)")
            if image_size(path) != want:
                raise ValueError(f"{path} (frame {k} of {meta_path}) is {image_size(path)} (h, w), but the "
                                 f"split's frames are {want}")
        bc = os.path.join(self.root, "bc.jpg")
        if not os.path.isfile(bc):
            raise FileNotFoundError(f"background image not found: {bc}")
        if image_size(bc) != want:
            raise ValueError(f"{bc} is {image_size(bc)} (h, w), but the frames of {meta_path} are {want}; "
                             f"the background must have the frames' size")

    def _check_frame_pngs(self, folder: str, meta_path: str, what: str, hint: str = "",
                          need_alpha: bool = False) -> None:
        """Every referenced <folder>/<img_id>.png exists with size (h, w) (and an alpha channel
        with ``need_alpha``), from the headers; ``what`` names the images and ``hint`` ends the
        missing-file message."""
        present = set(os.listdir(os.path.join(self.root, folder)))
        want = (self.height, self.width)
        for k, img_id in enumerate(self.img_ids):
            path = os.path.join(self.root, folder, f"{img_id}.png")
            if f"{img_id}.png" not in present:
                missing = sum(f"{i}.png" not in present for i in self.img_ids)
                raise FileNotFoundError(f"{what} not found: {path} (frame {k} of {meta_path}; {missing} of "
                                        f"{len(self.img_ids)} referenced {what}s are missing{hint})")
            height, width, has_alpha = torso_header(path)
            if (height, width) != want:
                raise ValueError(f"{path} (frame {k} of {meta_path}) is {(height, width)} (h, w), but the "
                                 f"split's frames are {want}")
            if need_alpha and not has_alpha:
                raise ValueError(f"{path} (frame {k} of {meta_path}) has no alpha channel; RAD-NeRF's torso "
                                 f"images are RGBA (alpha 0 outside the neck and torso)")

    def _landmarks(self, k: int, meta_path: str) -> np.ndarray:
        """(68, 2) landmarks of frame k, checked to lie inside the image."""
        path = os.path.join(self.root, "ori_imgs", f"{self.img_ids[k]}.lms")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"landmarks not found: {path} (frame {k} of {meta_path})")
        try:
            lms = read_lms(path)
        except ValueError as err:
            raise ValueError(f"{err} (frame {k} of {meta_path})") from None
        outside = (lms[:, 0] < 0) | (lms[:, 0] > self.width) | (lms[:, 1] < 0) | (lms[:, 1] > self.height)
        if outside.any():
            j = int(np.argmax(outside))
            raise ValueError(f"{path} (frame {k} of {meta_path}): landmark {j} at (x, y) = "
                             f"({lms[j, 0]:g}, {lms[j, 1]:g}) lies outside the {self.width}x{self.height} image")
        return lms

    # ---- audio --------------------------------------------------------------------------------
    def _load_audio(self, audio) -> Tuple[torch.Tensor, str]:
        """(N_audio, W, C) features and a description of where they came from (for messages)."""
        if isinstance(audio, torch.Tensor):
            if audio.dim() != 3:
                raise ValueError(f"audio tensor must be (N, W, C), got {tuple(audio.shape)}")
            if audio.shape[0] == 0:
                raise ValueError("audio tensor holds no frames")
            return audio.float(), "the given audio tensor"
        if isinstance(audio, str) and audio.endswith(".npy"):
            return load_feature_file(audio), audio
        if isinstance(audio, str) and feature_type(audio).name != "logmel":
            path = find_feature_file(self.root, audio)
            return load_feature_file(path, audio), path
        if audio is None:
            for name in FEATURE_FILES:
                path = os.path.join(self.root, name)
                if os.path.isfile(path):
                    return load_feature_file(path), path
        wav = os.path.join(self.root, "aud.wav")
        if not os.path.isfile(wav):
            raise FileNotFoundError(f"no audio features in {self.root}: none of {FEATURE_FILES} and no aud.wav")
        return self.logmel_features(wav), f"log-mel of {wav}"

    def logmel_features(self, wav_path: str) -> torch.Tensor:
        """Our log-mel windows (N, 16, 80) for every aud_id of the whole clip (the hook for
        computing features from speech when no ASR features are provided)."""
        return logmel_windows_from_file(wav_path)

    def audio_window(self, index: int) -> torch.Tensor:
        """(8, W, C) attention window of audio around item ``index``'s audio frame."""
        return attention_windows(self.audio_features, self.aud_index[index : index + 1])[0]

    # ---- images and cameras -----------------------------------------------------------------
    def _image_path(self, img_id: int) -> str:
        return os.path.join(self.root, "gt_imgs", f"{img_id}.jpg")

    def _decode_checked(self, img_id: int) -> np.ndarray:
        img = decode_image(self._image_path(img_id))
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(f"{self._image_path(img_id)} is {tuple(img.shape[:2])}, expected "
                             f"{(self.height, self.width)}")
        return img

    def _decode_torso_checked(self, img_id: int) -> np.ndarray:
        rgba = decode_rgba(torso_path(self.root, img_id))
        if rgba.shape[:2] != (self.height, self.width):
            raise ValueError(f"{torso_path(self.root, img_id)} is {tuple(rgba.shape[:2])}, expected "
                             f"{(self.height, self.width)}")
        return rgba

    def _decode_head_mask_checked(self, img_id: int) -> np.ndarray:
        path = parsing_path(self.root, img_id)
        mask = decode_head_mask(path)
        if mask.shape != (self.height, self.width):
            raise ValueError(f"{path} is {tuple(mask.shape)}, expected {(self.height, self.width)}")
        return mask

    def _stores(self):
        """(cache, pending prefetches, decoder) of each kind of per-frame image the folder has."""
        stores = [(self._cache, self._pending, self._decode_checked)]
        if self.has_torso:
            stores.append((self._torso_cache, self._torso_pending, self._decode_torso_checked))
        if self.has_parsing:
            stores.append((self._parsing_cache, self._parsing_pending, self._decode_head_mask_checked))
        return stores

    def prefetch(self, indices: Union[int, Sequence[int], torch.Tensor]) -> None:
        """Starts decoding the images (and torso images and head masks) of items ``indices`` on
        background threads (JPEG/PNG decoding releases the GIL), so a later ``image``/``torso_rgba``/
        ``head_mask``/``__getitem__`` of them does not wait for the disk and the decoder; e.g. call
        it with the next step's frames before running this step. Finished decodes move into the LRU caches, so at most
        ``cache_size`` + ``prefetch_workers`` decoded images of each kind are held; no-op with
        ``prefetch_workers=0`` or ``cache_size=0``."""
        if self.prefetch_workers == 0 or self.cache_size == 0:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.prefetch_workers, thread_name_prefix="pt3d-radnerf-jpeg")
        self._collect_prefetched()
        img_ids = [self.img_ids[i] for i in torch.as_tensor(indices, dtype=torch.long).reshape(-1).tolist()]
        for cache, pending, decode in self._stores():
            for img_id in img_ids:
                if img_id not in cache and img_id not in pending and len(pending) < self.cache_size:
                    pending[img_id] = self._executor.submit(decode, img_id)

    def _collect_prefetched(self) -> None:
        """Moves finished prefetches into the caches (failed ones stay, to raise when drawn)."""
        for cache, pending, _ in self._stores():
            for img_id, future in list(pending.items()):
                if future.done() and future.exception() is None:
                    del pending[img_id]
                    self._store(cache, img_id, future.result())

    def _store(self, cache: "OrderedDict[int, np.ndarray]", img_id: int, pixels: np.ndarray) -> None:
        if self.cache_size > 0:
            cache[img_id] = pixels
            cache.move_to_end(img_id)
            if len(cache) > self.cache_size:
                cache.popitem(last=False)

    def _fetch(self, cache, pending, decode, index: int) -> np.ndarray:
        """uint8 pixels of item ``index`` from one store: cached, prefetched or decoded now."""
        img_id = self.img_ids[index]
        if pending:
            self._collect_prefetched()
        if img_id in cache:
            cache.move_to_end(img_id)
            return cache[img_id]
        future = pending.pop(img_id, None)
        pixels = future.result() if future is not None else decode(img_id)
        self._store(cache, img_id, pixels)
        return pixels

    def image(self, index: int) -> torch.Tensor:
        """(H, W, 3) float32 in [0, 1] of item ``index`` (decoded on first use, then LRU-cached)."""
        pixels = self._fetch(self._cache, self._pending, self._decode_checked, index)
        return torch.from_numpy(pixels).float() / 255.0

    def _require_torso(self, what: str) -> None:
        if not self.has_torso:
            reason = "it was built with torso=False" if os.path.isdir(os.path.join(self.root, TORSO_FOLDER)) \
                else f"{os.path.join(self.root, TORSO_FOLDER)} does not exist"
            raise ValueError(f"{what} needs RAD-NeRF's torso images, but this dataset has none ({reason})")

    def torso_rgba(self, index: int) -> torch.Tensor:
        """(H, W, 4) float32 in [0, 1]: item ``index``'s ground-truth torso, straight alpha
        (decoded on first use, then LRU-cached as uint8). ValueError without torso images."""
        self._require_torso("torso_rgba")
        pixels = self._fetch(self._torso_cache, self._torso_pending, self._decode_torso_checked, index)
        return torch.from_numpy(pixels).float() / 255.0

    def torso_background(self, index: int) -> torch.Tensor:
        """(H, W, 3) float32: item ``index``'s ground-truth torso over ``bc.jpg`` (RAD-NeRF's
        ``bg_torso_img``: the head stage's background and the torso stage's target). ValueError
        without torso images."""
        return alpha_over(self.torso_rgba(index), self.background)

    def head_background(self, index: int) -> torch.Tensor:
        """(H, W, 3) float32 the head field is trained and evaluated head-only over:
        ``torso_background(index)`` when the dataset has torso images, else ``bc.jpg``."""
        return self.torso_background(index) if self.has_torso else self.background

    def head_mask(self, index: int) -> torch.Tensor:
        """(H, W) bool: True where item ``index``'s parsing map shows the head class (red; the neck
        and torso classes are not head). Decoded on first use, then LRU-cached. ValueError when the
        folder has no ``parsing/``."""
        if not self.has_parsing:
            raise ValueError(f"head_mask needs RAD-NeRF's face parsing maps in "
                             f"{os.path.join(self.root, PARSING_FOLDER)}, which does not exist")
        mask = self._fetch(self._parsing_cache, self._parsing_pending, self._decode_head_mask_checked, index)
        return torch.from_numpy(mask).clone()  # the cached array stays untouched by callers

    def close(self) -> None:
        """Stops the prefetch threads (pending decodes are dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for _, pending, _ in self._stores():
            pending.clear()

    def __getstate__(self):  # DataLoader workers get a copy without threads, futures or caches
        state = self.__dict__.copy()
        state.update(_cache=OrderedDict(), _pending={}, _torso_cache=OrderedDict(), _torso_pending={},
                     _parsing_cache=OrderedDict(), _parsing_pending={}, _executor=None)
        return state

    @property
    def background(self) -> torch.Tensor:
        """(H, W, 3) static background bc.jpg (its size is checked at load)."""
        if self._background is None:
            self._background = read_image(os.path.join(self.root, "bc.jpg"))
        return self._background

    def cameras(self, indices: Union[int, Sequence[int], torch.Tensor], device="cpu"):
        """PyTorch3D PerspectiveCameras (NDC intrinsics) for the given items."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        return self._all_cameras[idx].to(device)

    def __len__(self) -> int:
        return len(self.img_ids)

    def __getitem__(self, index: int) -> Dict[str, object]:
        return {
            "index": index,
            "img_id": self.img_ids[index],
            "aud_index": int(self.aud_index[index]),
            "image": self.image(index),
            "R": self.R[index],
            "T": self.T[index],
            "eye": self.eye[index],
            "lower_face_rect": self.lower_face_rects[index],
            "lips_rect": self.lips_rects[index],
            "torso_pose": self.torso_poses[index],
        }
