"""RAD-NeRF's face parsing: ``parsing/<img_id>.png``, one colour per semantic class.

RAD-NeRF's preprocessing (BiSeNet face parsing) paints the head pure red (255, 0, 0), the neck
green (0, 255, 0), the torso / cloth blue (0, 0, 255) and the background white. Classes are matched
with a per-channel tolerance (:data:`COLOR_TOLERANCE`), so a re-encoded (e.g. JPEG-compressed and
converted back) parsing map still reads the same; the four colours are at least 255 apart in some
channel, so no pixel matches two classes.
"""

import os

import numpy as np
from PIL import Image

PARSING_FOLDER = "parsing"
HEAD_RGB = (255, 0, 0)
NECK_RGB = (0, 255, 0)
TORSO_RGB = (0, 0, 255)
BACKGROUND_RGB = (255, 255, 255)
COLOR_TOLERANCE = 60  # max |channel - class colour|: well above JPEG noise, well below half of 255


def parsing_path(root: str, img_id: int) -> str:
    return os.path.join(root, PARSING_FOLDER, f"{img_id}.png")


def class_mask(rgb: np.ndarray, color) -> np.ndarray:
    """(H, W) bool: pixels of the (H, W, 3) uint8 parsing map ``rgb`` showing the class ``color``
    (every channel within :data:`COLOR_TOLERANCE` of it)."""
    diff = np.abs(rgb.astype(np.int16) - np.asarray(color, dtype=np.int16))
    return (diff <= COLOR_TOLERANCE).all(-1)


def decode_head_mask(path: str) -> np.ndarray:
    """(H, W) bool: the head class (red) of the parsing map at ``path``; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"parsing image not found: {path}")
    try:
        with Image.open(path) as img:
            rgb = np.array(img.convert("RGB"))
    except Exception as err:
        raise ValueError(f"cannot decode parsing image {path}: {err}") from err
    return class_mask(rgb, HEAD_RGB)
