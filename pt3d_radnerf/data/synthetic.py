"""The built-in synthetic talking head, written in RAD-NeRF's folder layout.

``ensure_synthetic()`` generates it once (deterministic from the seed) into a cache folder keyed by
its configuration and returns the folder, which ``TalkingHeadDataset`` reads like any RAD-NeRF
dataset. Generation writes through ``pt3d_radnerf.atomic.atomic_dir`` (a temporary folder renamed
into place when complete), so an interrupted run never leaves a half-written dataset behind; the
temporary a ``kill -9`` leaves is removed by the next ``ensure_synthetic`` (see ``remove_stale``).

The scene: the procedural head (:func:`~.head_mesh.build_head`) on a neck and shoulders
(:func:`~.head_mesh.build_torso`) in front of a static textured background, filmed by a static
camera. The head turns and shifts slightly (``speech.head_motion``); the torso turns only
``TORSO_TURN`` of the head's yaw about the neck's base and neither pitches nor shifts, so in the
head's frame (the tracker's, in which the cameras are given) it moves on its own, as a function of
the head pose (what RAD-NeRF's pose-conditioned torso can learn).

Contents (RAD-NeRF's preprocessing output, plus ground truth):

    gt_imgs/<i>.jpg      head over torso over bc.jpg (PyTorch3D mesh renderer, CPU)
    torso_imgs/<i>.png   RGBA neck + torso rendered without the head (what RAD-NeRF inpaints
                         behind the head comes for free), alpha 0 elsewhere
    parsing/<i>.png      head red, neck green, torso blue, background white (from pix_to_face)
    ori_imgs/<i>.lms     68 landmarks          bc.jpg         smooth procedural background
    aud.wav              synthetic speech      au.csv         OpenFace action units: AU45 from
                                                              the blinks, AU25/AU26 from the jaw
    transforms_{train,val}.json   the last ``val_fraction`` of the clip held out with its audio
    mouth_openness.npy / eye_openness.npy   ground truth per frame (lip-sync evaluation)
    config.json
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
from typing import NamedTuple, Optional

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_dir, remove_stale_temporaries
from ..audio.io import write_wav
from .cameras import radnerf_cameras
from .head_mesh import NECK_PIVOT, build_head, build_torso
from .parsing import BACKGROUND_RGB, HEAD_RGB, NECK_RGB, TORSO_RGB
from .speech import FPS, RATE, blink_curve, head_motion, mouth_openness, synthesize_speech

BACKGROUND = (0.78, 0.82, 0.86)  # mean colour of bc.jpg
CAMERA_DISTANCE = 0.7  # tracker units, as RAD-NeRF's tracker (trans_z -7 / 10)
CAMERA_HEIGHT = -0.09  # the camera looks level at this height: head in the upper part, shoulders below
FOCAL = 1.1  # x the image size
TORSO_TURN = 0.3  # the torso turns this fraction of the head's yaw
PARSING_COLORS = np.array([BACKGROUND_RGB, HEAD_RGB, NECK_RGB, TORSO_RGB], dtype=np.uint8)  # by label
AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU45")  # OpenFace FeatureExtraction's AU columns
FORMAT_VERSION = 2


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
    """(N, 4, 4) OpenGL camera-to-world poses in the head's frame (head motion = inverse camera
    motion); at rest (zero angles and shift) the camera sits at (0, CAMERA_HEIGHT, CAMERA_DISTANCE)
    looking down its -z."""
    poses = np.tile(np.eye(4), (len(angles), 1, 1))
    for i, ((yaw, pitch), t) in enumerate(zip(angles, shift)):
        rot = _rotation(yaw, pitch)
        poses[i, :3, :3] = rot
        poses[i, :3, 3] = rot @ np.array([0.0, CAMERA_HEIGHT, CAMERA_DISTANCE]) + t
    return poses


def torso_transforms(poses: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(N, 4, 4): the torso's rest frame -> the head's frame, per frame.

    In the static camera's world the head's pose is ``M = P0 inv(pose)`` (``P0`` the rest camera);
    the torso's is ``S``: turned by ``TORSO_TURN`` x the head's yaw about the neck's base, which
    stays put (the head's small shifts are taken up inside it: the neck's top is hidden in the
    head). In the head's frame that is ``inv(M) S``."""
    rest = camera_poses(np.zeros((1, 2)), np.zeros((1, 3)))[0]
    pivot = np.array(NECK_PIVOT)
    out = np.empty_like(poses)
    for i, (pose, (yaw, _)) in enumerate(zip(poses, angles)):
        head = rest @ np.linalg.inv(pose)
        torso = np.eye(4)
        torso[:3, :3] = _rotation(-TORSO_TURN * yaw, 0.0)  # the head turns by pose^T: yaw -> -yaw
        torso[:3, 3] = pivot - torso[:3, :3] @ pivot
        out[i] = np.linalg.inv(head) @ torso
    return out


def tracker_to_ngp(points: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """Tracker-world points -> RAD-NeRF's world (the point map matching nerf_matrix_to_ngp)."""
    return scale * points[..., [1, 2, 0]]


def background_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float in [0, 1]: a smooth wall (low-frequency colour waves and a vertical
    gradient around ``BACKGROUND``), different per seed."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi, 3)
    tex = np.array(BACKGROUND) - 0.1 * (rows - 0.5)[..., None]
    tex = tex + 0.06 * np.sin(2 * np.pi * (1.3 * cols + 0.4 * rows) + phase[0])[..., None] * np.array([1.0, 0.7, 0.3])
    tex = tex + 0.05 * np.cos(2 * np.pi * (0.8 * rows - 0.6 * cols) + phase[1])[..., None] * np.array([0.3, 0.6, 1.0])
    tex = tex + 0.03 * np.sin(2 * np.pi * 2.2 * cols + phase[2])[..., None]
    return np.clip(tex, 0.0, 1.0)


LAYERS = 4  # faces kept per pixel, nearest first: enough to reach the neck or torso behind a head
# feature patch, the skin under it and the back of the head
HEAD_HIDDEN_Z = -0.04  # head faces wholly behind this depth (head frame) are never in view (the
# back of the head; the camera looks down onto the shoulders, so the torso is kept whole)


class Rasterizer:
    """PyTorch3D's CPU mesh rasterizer (no blur, ``LAYERS`` faces per pixel) with PyTorch3D's flat
    shading under white ambient light, which for vertex colours is their barycentric interpolation."""

    def __init__(self, size: int):
        from pytorch3d.renderer import MeshRasterizer, RasterizationSettings

        raster = RasterizationSettings(image_size=size, blur_radius=0.0, faces_per_pixel=LAYERS, bin_size=0)
        self.rasterizer = MeshRasterizer(raster_settings=raster)

    def __call__(self, verts: np.ndarray, faces: np.ndarray, camera):
        """(H, W, LAYERS) int64 face index (-1: none) and (H, W, LAYERS, 3) barycentric weights of
        a mesh in RAD-NeRF's world."""
        from pytorch3d.structures import Meshes

        fragments = self.rasterizer(Meshes([torch.from_numpy(verts)], [torch.from_numpy(faces)]), cameras=camera)
        return fragments.pix_to_face[0], fragments.bary_coords[0]

    @staticmethod
    def shade(colors: np.ndarray, faces: np.ndarray, face: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) colour of one layer: ``face`` (H, W) / ``bary`` (H, W, 3) from :meth:`__call__`
        (0 where ``face`` is -1)."""
        corner = torch.from_numpy(colors)[torch.from_numpy(faces)[face.clamp(min=0)]]  # (H, W, 3 corners, 3)
        return (corner * bary[..., None]).sum(-2) * (face >= 0)[..., None]


class Frame(NamedTuple):
    """One rendered frame (H = W = the image size)."""

    rgb: torch.Tensor  # (H, W, 3) float: head and torso where ``labels`` > 0, else 0
    labels: torch.Tensor  # (H, W) int64: 0 background, 1 head, 2 neck, 3 torso (parsing's classes)
    torso_rgb: torch.Tensor  # (H, W, 3) float: the neck and torso as if the head were not there
    torso_alpha: torch.Tensor  # (H, W) bool: where they cover
    landmarks: torch.Tensor  # (68, 2) x = column, y = row


def scene_mesh(openness: float, eye_open: float, torso_to_head: np.ndarray):
    """The frame's head and torso (moved by ``torso_to_head`` (4, 4)) in the head's frame, without
    the head's faces no camera sees: verts (V, 3) float32 (tracker units), faces (F, 3), colours (V, 3)
    and each face's part (F,) (1 head, 2 neck, 3 torso), and the head's (68, 3) landmarks."""
    head, torso = build_head(openness, eye_open), build_torso()
    rot, shift = torso_to_head[:3, :3], torso_to_head[:3, 3]
    verts = np.vstack([head.verts, torso.verts @ rot.T + shift]).astype(np.float32)
    faces = np.vstack([head.faces, torso.faces + len(head.verts)])
    part = np.repeat([1, 2, 3], [len(head.faces), torso.neck_faces, len(torso.faces) - torso.neck_faces])
    seen = (part != 1) | (verts[faces, 2].max(-1) > HEAD_HIDDEN_Z)
    return verts, faces[seen], np.vstack([head.colors, torso.colors]), part[seen], head.landmarks


def render_frame(raster: Rasterizer, camera, openness: float, eye_open: float, torso_to_head: np.ndarray) -> Frame:
    """Renders one frame, head and torso in one rasterization: the nearest face of each pixel
    gives the frame and its parsing class; the nearest neck or torso face, the torso image."""
    verts, faces, colors, part, landmarks = scene_mesh(openness, eye_open, torso_to_head)
    face, bary = raster(tracker_to_ngp(verts), faces, camera)
    part_of = torch.where(face >= 0, torch.from_numpy(part)[face.clamp(min=0)], 0)  # (H, W, LAYERS)
    labels = part_of[..., 0]
    is_torso = part_of >= 2
    layer = is_torso.int().argmax(-1, keepdim=True)  # the first neck/torso layer (0 when none)
    torso_face = torch.where(is_torso.any(-1), face.gather(-1, layer)[..., 0], -1)
    torso_bary = bary.gather(-2, layer[..., None].expand(*layer.shape, 3))[..., 0, :]
    lms = camera.transform_points_screen(torch.from_numpy(tracker_to_ngp(landmarks))[None])[0, :, :2]
    return Frame(raster.shade(colors, faces, face[..., 0], bary[..., 0, :]), labels,
                 raster.shade(colors, faces, torso_face, torso_bary), torso_face >= 0, lms)


def _to_uint8(image) -> np.ndarray:
    return (np.clip(np.asarray(image), 0.0, 1.0) * 255).round().astype(np.uint8)


def write_au_csv(path: str, openness: np.ndarray, eyes: np.ndarray) -> None:
    """OpenFace FeatureExtraction's action-unit csv (its column names, a space after each comma):
    AU45 (blink) = 2 x (1 - eye openness), AU25/AU26 (lips part / jaw drop) from the mouth
    openness, the other AUs 0; presence (_c) where the intensity exceeds 1."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"{name}_r" for name in AU_NAMES] + [f"{name}_c" for name in AU_NAMES]
    lines = [", ".join(header)]
    for i, (mouth, eye) in enumerate(zip(openness, eyes)):
        r = dict.fromkeys(AU_NAMES, 0.0)
        r.update(AU25=2.0 * mouth, AU26=3.0 * mouth, AU45=2.0 * (1.0 - eye))
        values = [f"{i + 1}", "0", f"{i / FPS:.3f}", "0.98", "1"]
        values += [f"{r[name]:.2f}" for name in AU_NAMES] + [f"{float(r[name] > 1.0):.0f}" for name in AU_NAMES]
        lines.append(", ".join(values))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def generate(root: str, config: SyntheticConfig, progress: bool = True) -> None:
    """Writes the synthetic dataset into the (new or empty) folder ``root``."""
    rng = np.random.default_rng(config.seed)
    n_frames = int(round(config.seconds * FPS))
    speech = synthesize_speech(n_frames / FPS, rng)
    openness = mouth_openness(speech.envelope, n_frames)
    eyes = blink_curve(n_frames, rng)
    angles, shift = head_motion(n_frames, rng)
    poses = camera_poses(angles, shift)
    torso_poses = torso_transforms(poses, angles)
    size = config.size
    focal = FOCAL * size
    cams = radnerf_cameras(torch.from_numpy(poses), focal, focal, size / 2, size / 2, size, size)
    raster = Rasterizer(size)

    for folder in ("gt_imgs", "ori_imgs", "torso_imgs", "parsing"):
        os.makedirs(os.path.join(root, folder))
    write_wav(os.path.join(root, "aud.wav"), speech.samples, RATE)
    bc_path = os.path.join(root, "bc.jpg")
    imageio.imwrite(bc_path, _to_uint8(background_texture(size, np.random.default_rng([config.seed, 1]))),
                    quality=95)
    bc = torch.from_numpy(imageio.imread(bc_path)).float() / 255.0  # composite over the decoded file
    write_au_csv(os.path.join(root, "au.csv"), openness, eyes)
    for i in tqdm(range(n_frames), desc="synthetic talking head", disable=not progress, unit="frame"):
        with torch.no_grad():
            frame = render_frame(raster, cams[i], float(openness[i]), float(eyes[i]), torso_poses[i])
        image = torch.where((frame.labels > 0)[..., None], frame.rgb, bc)
        imageio.imwrite(os.path.join(root, "gt_imgs", f"{i}.jpg"), _to_uint8(image), quality=95)
        alpha = frame.torso_alpha[..., None].float()
        torso = torch.cat([frame.torso_rgb * alpha, alpha], -1)
        imageio.imwrite(os.path.join(root, "torso_imgs", f"{i}.png"), _to_uint8(torso))
        imageio.imwrite(os.path.join(root, "parsing", f"{i}.png"), PARSING_COLORS[frame.labels.numpy()])
        np.savetxt(os.path.join(root, "ori_imgs", f"{i}.lms"), frame.landmarks.numpy(), fmt="%.2f")
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
