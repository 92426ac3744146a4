"""MP4 export with the audio track muxed in (RAD-NeRF's videos come out silent)."""

import os
import subprocess
import tempfile
from typing import Iterable, Optional

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import torch

from ..atomic import TEMP_PREFIX, atomic_path


def to_uint8(frame) -> np.ndarray:
    """(H, W, 3) float in [0, 1] (tensor or array) or uint8 -> (H, W, 3) uint8."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frame


def write_video(frames: Iterable, path: str, fps: float = 25.0, audio_path: Optional[str] = None,
                audio_offset_s: float = 0.0) -> str:
    """Writes frames to an H.264 MP4 and, if given, muxes ``audio_path`` (any format ffmpeg reads)
    as an AAC track trimmed to the video's length. Written through :func:`pt3d_radnerf.atomic.atomic_path`
    (scratch files in a temporary folder beside it), so an interrupted export never leaves a
    truncated video at ``path``.

    Args:
        frames: iterable of (H, W, 3) frames, float in [0, 1] or uint8.
        path: output .mp4 path.
        fps: frame rate (RAD-NeRF data is 25 fps).
        audio_path: optional audio file to mux in.
        audio_offset_s: seconds to skip at the start of the audio (for held-out segments).

    Returns:
        ``path``.
    """
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=out_dir) as scratch, atomic_path(path) as final:
        silent = os.path.join(scratch, "silent.mp4")
        n = 0
        with imageio.get_writer(silent, fps=fps, codec="libx264", quality=8,
                                macro_block_size=1, ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(to_uint8(frame))
                n += 1
        if n == 0:
            raise ValueError("write_video: no frames given")
        if audio_path is None:
            os.replace(silent, final)
        else:
            if not os.path.isfile(audio_path):
                raise FileNotFoundError(f"write_video: audio file not found: {audio_path}")
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", silent,
                   "-ss", f"{audio_offset_s:.3f}", "-i", audio_path, "-map", "0:v:0", "-map", "1:a:0",
                   "-c:v", "copy", "-c:a", "aac", "-t", f"{n / fps:.3f}", "-f", "mp4", final]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"ffmpeg failed to mux audio: {result.stderr.strip()}")
    return path


def probe_streams(path: str) -> str:
    """ffmpeg's description of a media file's streams (for tests and logs)."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                            capture_output=True, text=True)
    return "\n".join(line.strip() for line in result.stderr.splitlines() if "Stream #" in line)
