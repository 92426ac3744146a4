"""The built-in synthetic talking head, written in RAD-NeRF's folder layout.

``ensure_synthetic()`` generates it once (deterministic from the seed) into a cache folder keyed by
its configuration and returns the folder, which ``TalkingHeadDataset`` reads like any RAD-NeRF
dataset. Generation writes through ``pt3d_radnerf.atomic.atomic_dir`` (a temporary folder renamed
into place when complete), so an interrupted run never leaves a half-written dataset behind; the
temporary a ``kill -9`` leaves is removed by the next ``ensure_synthetic`` (see ``remove_stale``).

Contents: gt_imgs/<i>.jpg renders of the procedural head (PyTorch3D mesh renderer, CPU) over
bc.jpg, ori_imgs/<i>.lms landmarks, aud.wav synthetic speech, transforms_{train,val}.json (the
last ``val_fraction`` of the clip held out with its audio), mouth_openness.npy (ground truth per
frame, for lip-sync evaluation), eye_openness.npy and config.json.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Optional

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_dir, remove_stale_temporaries
from ..audio.io import write_wav
from .cameras import radnerf_cameras
from .head_mesh import build_head
from .speech import FPS, RATE, blink_curve, head_motion, mouth_openness, synthesize_speech

BACKGROUND = (0.78, 0.82, 0.86)
CAMERA_DISTANCE = 0.7  # tracker units, as RAD-NeRF's tracker (trans_z -7 / 10)
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SyntheticConfig:
    size: int = 128
    seconds: float = 40.0
    seed: int = 0
    val_fraction: float = 0.12

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "v": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def default_cache_dir() -> str:
    return os.environ.get("PT3D_RADNERF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "pt3d_radnerf"))


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


def camera_poses(angles: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(N, 4, 4) OpenGL camera-to-world poses orbiting the head (head motion = inverse camera motion)."""
    poses = np.tile(np.eye(4), (len(angles), 1, 1))
    for i, ((yaw, pitch), t) in enumerate(zip(angles, shift)):
        rot = _rotation(yaw, pitch)
        poses[i, :3, :3] = rot  # camera axes: looks down its -z = toward the origin
        poses[i, :3, 3] = rot @ np.array([0.0, 0.0, CAMERA_DISTANCE]) + t
    return poses


def tracker_to_ngp(points: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """Tracker-world points -> RAD-NeRF's world (the point map matching nerf_matrix_to_ngp)."""
    return scale * points[..., [1, 2, 0]]


def _renderer(size: int):
    from pytorch3d.renderer import (AmbientLights, BlendParams, HardFlatShader, MeshRasterizer,
                                    MeshRenderer, RasterizationSettings)

    raster = RasterizationSettings(image_size=size, blur_radius=0.0, faces_per_pixel=1, bin_size=0)
    lights = AmbientLights(ambient_color=((1.0, 1.0, 1.0),))
    shader = HardFlatShader(lights=lights, blend_params=BlendParams(background_color=BACKGROUND))
    return MeshRenderer(MeshRasterizer(raster_settings=raster), shader)


def render_frame(renderer, camera, openness: float, eye_open: float):
    """(H, W, 3) float image and (68, 2) landmarks (x = column, y = row) of one frame."""
    from pytorch3d.renderer import TexturesVertex
    from pytorch3d.structures import Meshes

    head = build_head(openness, eye_open)
    verts = torch.from_numpy(tracker_to_ngp(head.verts))
    mesh = Meshes([verts], [torch.from_numpy(head.faces)],
                  textures=TexturesVertex([torch.from_numpy(head.colors)]))
    image = renderer(mesh, cameras=camera)[0, ..., :3]
    lms = camera.transform_points_screen(torch.from_numpy(tracker_to_ngp(head.landmarks))[None])[0, :, :2]
    return image, lms


def generate(root: str, config: SyntheticConfig, progress: bool = True) -> None:
    """Writes the synthetic dataset into the (new or empty) folder ``root``."""
    rng = np.random.default_rng(config.seed)
    n_frames = int(round(config.seconds * FPS))
    speech = synthesize_speech(n_frames / FPS, rng)
    openness = mouth_openness(speech.envelope, n_frames)
    eyes = blink_curve(n_frames, rng)
    angles, shift = head_motion(n_frames, rng)
    poses = camera_poses(angles, shift)
    size = config.size
    focal = 1.35 * size  # the head fills most of the frame
    cams = radnerf_cameras(torch.from_numpy(poses), focal, focal, size / 2, size / 2, size, size)
    renderer = _renderer(size)

    os.makedirs(os.path.join(root, "gt_imgs"))
    os.makedirs(os.path.join(root, "ori_imgs"))
    write_wav(os.path.join(root, "aud.wav"), speech.samples, RATE)
    imageio.imwrite(os.path.join(root, "bc.jpg"),
                    np.tile((np.array(BACKGROUND) * 255).round().astype(np.uint8), (size, size, 1)), quality=95)
    for i in tqdm(range(n_frames), desc="synthetic talking head", disable=not progress, unit="frame"):
        with torch.no_grad():
            image, lms = render_frame(renderer, cams[i], float(openness[i]), float(eyes[i]))
        imageio.imwrite(os.path.join(root, "gt_imgs", f"{i}.jpg"),
                        (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8), quality=95)
        np.savetxt(os.path.join(root, "ori_imgs", f"{i}.lms"), lms.numpy(), fmt="%.2f")
    np.save(os.path.join(root, "mouth_openness.npy"), openness)
    np.save(os.path.join(root, "eye_openness.npy"), eyes)
    n_val = max(1, int(round(n_frames * config.val_fraction)))
    splits = {"train": range(0, n_frames - n_val), "val": range(n_frames - n_val, n_frames)}
    for split, ids in splits.items():
        meta = {"focal_len": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size, "fps": FPS,
                "frames": [{"img_id": i, "aud_id": i, "transform_matrix": poses[i].tolist()} for i in ids]}
        with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
            json.dump(meta, f)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(config), "format_version": FORMAT_VERSION}, f)


LOCK_NAME = ".generating.lock"
LEGACY_TEMP_PREFIX = ".partial-"  # the temporaries of earlier versions' own tempfile.mkdtemp
LEGACY_MIN_AGE_S = 3600.0  # earlier versions do not take the lock: spare their recent temporaries


@contextlib.contextmanager
def _generation_lock(folder: str):
    """Held (shared) by every process generating into ``folder``; ``remove_stale`` takes it
    exclusively. flock locks vanish with their process, so a killed generator never blocks cleanup."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, LOCK_NAME), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_stale(folder: str) -> int:
    """Removes the temporaries killed generators left in the cache ``folder`` and returns how many.

    Only when no live process is generating there (the exclusive generation lock is free), since a
    live generator's temporary looks exactly like a dead one's; otherwise removes nothing (the
    next start will).
    """
    if not os.path.isdir(folder):
        return 0
    with open(os.path.join(folder, LOCK_NAME), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        try:
            removed = remove_stale_temporaries(folder)
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name.startswith(LEGACY_TEMP_PREFIX) and time.time() - os.lstat(path).st_mtime > LEGACY_MIN_AGE_S:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
            return removed
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_synthetic(config: Optional[SyntheticConfig] = None, cache_dir: Optional[str] = None,
                     progress: bool = True) -> str:
    """Path of the synthetic dataset for ``config``, generating it on first use (atomically).

    Every call first removes what killed generators left in the cache (``remove_stale``).
    Concurrent calls for the same config may both generate; the first rename wins, the other's
    copy is dropped.
    """
    config = config or SyntheticConfig()
    cache_dir = cache_dir or default_cache_dir()
    folder = os.path.join(cache_dir, "synthetic")
    root = os.path.join(folder, config.key())
    remove_stale(folder)
    if os.path.isfile(os.path.join(root, "config.json")):
        return root
    with _generation_lock(folder), atomic_dir(root) as tmp:
        generate(tmp, config, progress)
    if not os.path.isfile(os.path.join(root, "config.json")):  # a folder not made by this code was in the way
        raise FileExistsError(f"{root} exists but is not a complete synthetic dataset (no config.json); remove it")
    return root
