"""RAD-NeRF dataset folders as PyTorch3D cameras, images, landmarks regions and audio windows.

Folder layout (as written by RAD-NeRF's preprocessing, and by our synthetic generator):

    transforms_train.json / transforms_val.json   focal_len (or fl_x/fl_y), cx, cy, [w, h], frames
    gt_imgs/<img_id>.jpg     target frames          bc.jpg      static background
    ori_imgs/<img_id>.lms    68 landmarks "x y"     aud.wav     16 kHz speech
    aud_ds.npy | aud_eo.npy | aud.npy | aud_hu.npy  optional precomputed ASR features

Audio/frame count mismatch: audio features are indexed by each frame's ``aud_id``. If the
features are short by at most ``AUDIO_SLACK`` frames (rounding of the audio length), the index
is clamped to the last window; a larger shortfall raises ValueError.
"""

import json
import os
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import imageio.v2 as imageio
import numpy as np
import torch

from ..audio import attention_windows, feature_type, load_feature_file, logmel_windows_from_file
from .cameras import NGP_OFFSET, NGP_SCALE, nerf_matrix_to_ngp, radnerf_cameras
from .landmarks import eye_area, lips_rect, lower_face_rect, read_lms

FPS = 25
AUDIO_SLACK = 2
FEATURE_FILES = ("aud_ds.npy", "aud_eo.npy", "aud.npy", "aud_hu.npy")


def read_image(path: str) -> torch.Tensor:
    """(H, W, 3) float32 in [0, 1]; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        img = imageio.imread(path)
    except Exception as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(img[..., :3])).float() / 255.0


class TalkingHeadDataset(torch.utils.data.Dataset):
    """One split of a RAD-NeRF talking-head folder.

    Args:
        root: dataset folder.
        split: "train" or "val" (reads transforms_<split>.json).
        audio: None = auto (first precomputed npy present, else log-mel of aud.wav); a feature
            type name ("deepspeech", "esperanto", "wav2vec", "hubert", "logmel"); a path to a
            .npy; or a (N, W, C) tensor.
        cache_size: decoded images kept in memory (LRU); frames are never all preloaded.
        scale, offset: RAD-NeRF's ``nerf_matrix_to_ngp`` pose scale and offset.

    Item ``i`` is a dict: ``image`` (H, W, 3), ``index`` (i), ``img_id``, ``aud_index``,
    ``R`` (3, 3) / ``T`` (3,) PyTorch3D extrinsics, ``eye`` (eye area %), ``lower_face_rect`` and
    ``lips_rect`` (x0, x1, y0, y1).
    """

    def __init__(self, root: str, split: str = "train",
                 audio: Union[None, str, torch.Tensor] = None, cache_size: int = 256,
                 scale: float = NGP_SCALE, offset: Sequence[float] = NGP_OFFSET):
        self.root, self.split, self.cache_size = root, split, cache_size
        meta_path = os.path.join(root, f"transforms_{split}.json")
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f"dataset split file not found: {meta_path}")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
        if "fps" in meta and float(meta["fps"]) != FPS:
            raise ValueError(f"{meta_path}: fps is {meta['fps']}, but RAD-NeRF data must be {FPS} fps")
        try:
            self.cx, self.cy = float(meta["cx"]), float(meta["cy"])
            self.fx = float(meta.get("fl_x", meta.get("focal_len")))
            self.fy = float(meta.get("fl_y", meta.get("focal_len")))
            frames = meta["frames"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{meta_path} lacks a field ({err}); need cx, cy, focal_len or fl_x/fl_y, frames") from err
        self.width = int(meta.get("w", int(self.cx) * 2))
        self.height = int(meta.get("h", int(self.cy) * 2))
        if not frames:
            raise ValueError(f"{meta_path} lists no frames")
        self.img_ids = [int(fr["img_id"]) for fr in frames]
        self.aud_ids = [int(fr.get("aud_id", fr["img_id"])) for fr in frames]
        poses = torch.tensor([fr["transform_matrix"] for fr in frames], dtype=torch.float64)
        if poses.shape[1:] != (4, 4):
            raise ValueError(f"{meta_path}: transform_matrix must be 4x4, got {tuple(poses.shape[1:])}")
        self.c2w = nerf_matrix_to_ngp(poses, scale, offset)  # (N, 4, 4) OpenCV c2w, RAD-NeRF world
        self._all_cameras = radnerf_cameras(poses, self.fx, self.fy, self.cx, self.cy, self.width,
                                            self.height, scale, offset)
        self.R, self.T = self._all_cameras.R, self._all_cameras.T

        lms = [read_lms(os.path.join(root, "ori_imgs", f"{i}.lms")) for i in self.img_ids]
        self.lower_face_rects = [lower_face_rect(l) for l in lms]
        self.lips_rects = [lips_rect(l, self.width, self.height) for l in lms]
        self.eye_areas = torch.tensor([eye_area(l, self.width, self.height) for l in lms], dtype=torch.float32)

        self.audio_features = self._load_audio(audio)
        n_aud = self.audio_features.shape[0]
        short = max(self.aud_ids) + 1 - n_aud
        if short > AUDIO_SLACK:
            raise ValueError(f"{root}: audio features cover {n_aud} frames but frames reference aud_id "
                             f"up to {max(self.aud_ids)} (more than {AUDIO_SLACK} frames short)")
        self.aud_index = torch.tensor([min(a, n_aud - 1) for a in self.aud_ids])
        self._cache: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self._background: Optional[torch.Tensor] = None

    # ---- audio --------------------------------------------------------------------------------
    def _load_audio(self, audio) -> torch.Tensor:
        if isinstance(audio, torch.Tensor):
            if audio.dim() != 3:
                raise ValueError(f"audio tensor must be (N, W, C), got {tuple(audio.shape)}")
            return audio.float()
        if isinstance(audio, str) and audio.endswith(".npy"):
            return load_feature_file(audio)
        if isinstance(audio, str) and audio != "logmel":
            kind = feature_type(audio)
            return load_feature_file(os.path.join(self.root, kind.file_name), kind.name)
        if audio is None:
            for name in FEATURE_FILES:
                path = os.path.join(self.root, name)
                if os.path.isfile(path):
                    return load_feature_file(path)
        wav = os.path.join(self.root, "aud.wav")
        if not os.path.isfile(wav):
            raise FileNotFoundError(f"no audio features in {self.root}: none of {FEATURE_FILES} and no aud.wav")
        return self.logmel_features(wav)

    def logmel_features(self, wav_path: str) -> torch.Tensor:
        """Our log-mel windows (N, 16, 80) for every aud_id of the whole clip (the hook for
        computing features from speech when no ASR features are provided)."""
        return logmel_windows_from_file(wav_path)

    def audio_window(self, index: int) -> torch.Tensor:
        """(8, W, C) attention window of audio around item ``index``'s audio frame."""
        return attention_windows(self.audio_features, self.aud_index[index : index + 1])[0]

    # ---- images and cameras -----------------------------------------------------------------
    def image(self, index: int) -> torch.Tensor:
        img_id = self.img_ids[index]
        if img_id in self._cache:
            self._cache.move_to_end(img_id)
            return self._cache[img_id]
        img = read_image(os.path.join(self.root, "gt_imgs", f"{img_id}.jpg"))
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(f"gt_imgs/{img_id}.jpg is {tuple(img.shape[:2])}, expected {(self.height, self.width)}")
        self._cache[img_id] = img
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img

    @property
    def background(self) -> torch.Tensor:
        """(H, W, 3) static background bc.jpg."""
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
            "eye": self.eye_areas[index],
            "lower_face_rect": self.lower_face_rects[index],
            "lips_rect": self.lips_rects[index],
        }
