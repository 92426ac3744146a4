"""Torso data of RAD-NeRF folders: RGBA torso images, the torso's pose vector and pixel coordinates.

RAD-NeRF's preprocessing writes ``torso_imgs/<img_id>.png``: RGBA, the neck and torso with the head
removed (alpha 0 elsewhere). The head field is trained, and evaluated head-only, over that torso
composited onto ``bc.jpg`` (:func:`alpha_over`); the torso stage learns it from the pose
(:func:`convert_poses`) at every pixel's coordinate (:func:`bg_coords`).
"""

import os
from typing import Tuple

import numpy as np
import torch
from PIL import Image
from pytorch3d.transforms import matrix_to_euler_angles

TORSO_FOLDER = "torso_imgs"


def torso_path(root: str, img_id: int) -> str:
    return os.path.join(root, TORSO_FOLDER, f"{img_id}.png")


def png_header(path: str) -> Tuple[int, int, bool]:
    """(height, width, has_alpha) of a PNG from its header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            return img.height, img.width, has_alpha
    except Exception as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def decode_rgba(path: str) -> np.ndarray:
    """(H, W, 4) uint8 RGBA pixels of an image with an alpha channel; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torso image not found: {path}")
    try:
        with Image.open(path) as img:
            if not (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info):
                raise ValueError(f"it has no alpha channel (mode {img.mode}); torso images are RGBA")
            return np.array(img.convert("RGBA"))
    except Exception as err:
        raise ValueError(f"cannot decode torso image {path}: {err}") from err


def alpha_over(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Straight-alpha ``rgba`` (..., 4) over ``background`` (..., 3): ``rgb * a + bg * (1 - a)``."""
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def convert_poses(c2w: torch.Tensor) -> torch.Tensor:
    """RAD-NeRF's ``convert_poses``: the torso's pose vector of camera-to-world matrices.

    Args:
        c2w: (..., 4, 4) (or (..., 3, 4)) camera-to-world in RAD-NeRF's world (after
            ``nerf_matrix_to_ngp``; the dataset's ``c2w``).

    Returns:
        (..., 6): XYZ Euler angles (radians; R = Rx(a) Ry(b) Rz(c), b in [-pi/2, pi/2]) of the
        rotation, then the translation; in ``c2w``'s dtype.
    """
    c2w = torch.as_tensor(c2w)
    if c2w.dim() < 2 or tuple(c2w.shape[-2:]) not in ((4, 4), (3, 4)):
        raise ValueError(f"c2w must have shape (..., 4, 4) or (..., 3, 4), got {tuple(c2w.shape)}")
    angles = matrix_to_euler_angles(c2w[..., :3, :3], "XYZ")
    return torch.cat([angles, c2w[..., :3, 3]], -1)


def bg_coords(height: int, width: int, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """RAD-NeRF's ``get_bg_coords``: every pixel's 2-D coordinate for the torso field.

    Returns:
        (H, W, 2): ``[row, col]`` scaled to [-1, 1] with the first/last pixel at -1/1
        (``row / (H - 1) * 2 - 1``); ``.reshape(-1, 2)`` is RAD-NeRF's (H * W, 2) row-major order.
    """
    if int(height) != height or int(width) != width or height < 2 or width < 2:
        raise ValueError(f"bg_coords needs integer height and width >= 2, got {height!r} x {width!r}")
    rows = torch.arange(int(height), dtype=dtype, device=device) / (height - 1) * 2 - 1
    cols = torch.arange(int(width), dtype=dtype, device=device) / (width - 1) * 2 - 1
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1)
