"""Face regions from 68 facial landmarks (x = column, y = row), as RAD-NeRF derives them."""

from typing import Tuple

import numpy as np

Rect = Tuple[int, int, int, int]  # (x0, x1, y0, y1): columns x0:x1, rows y0:y1


def read_lms(path: str) -> np.ndarray:
    """(68, 2) float landmarks from a ``.lms`` file of 68 "x y" lines."""
    try:
        lms = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read landmarks file {path}: {err}") from err
    if lms.shape != (68, 2) or not np.isfinite(lms).all():
        raise ValueError(f"landmarks file {path} must hold 68 finite 'x y' lines, got shape {lms.shape}")
    return lms


def lower_face_rect(lms: np.ndarray) -> Rect:
    """From the nose bottom (31:36) down to the chin, across all landmarks' columns."""
    xs, ys = lms[:, 0], lms[:, 1]
    return int(xs.min()), int(np.ceil(xs.max())), int(lms[31:36, 1].min()), int(np.ceil(ys.max()))


def lips_rect(lms: np.ndarray, width: int, height: int) -> Rect:
    """Bounding box of the lips (48:60) made square around its centre, clipped to the image."""
    lips = lms[48:60]
    (x_lo, y_lo), (x_hi, y_hi) = lips.min(0), lips.max(0)
    cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
    half = max(x_hi - x_lo, y_hi - y_lo) / 2
    x0, x1 = max(0, int(cx - half)), min(width, int(np.ceil(cx + half)))
    y0, y1 = max(0, int(cy - half)), min(height, int(np.ceil(cy + half)))
    return x0, x1, y0, y1


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a closed polygon (K, 2)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def eye_area(lms: np.ndarray, width: int, height: int) -> float:
    """Both eyes' polygon areas (36:42, 42:48) as a percentage of the image area."""
    return (polygon_area(lms[36:42]) + polygon_area(lms[42:48])) / (width * height) * 100.0
