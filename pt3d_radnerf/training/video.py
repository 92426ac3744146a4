"""MP4 export with the audio track muxed in (RAD-NeRF's videos come out silent)."""

import contextlib
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


class VideoWriter:
    """Writes frames to an H.264 MP4 as they come and, if given, muxes ``audio_path`` (any format
    ffmpeg reads) as an AAC track trimmed to the video's length::

        with VideoWriter(path, fps, audio_path) as video:
            for frame in frames:
                video.append(frame)

    The file appears at ``path`` only when the block exits without an error, through
    :func:`pt3d_radnerf.atomic.atomic_path` (scratch files in a temporary folder beside it), so an
    interrupted export never leaves a truncated video. No frame is kept after ``append``.

    Args:
        path: output .mp4 path.
        fps: frame rate (RAD-NeRF data is 25 fps).
        audio_path: optional audio file to mux in.
        audio_offset_s: seconds to skip at the start of the audio (for held-out segments).
    """

    def __init__(self, path: str, fps: float = 25.0, audio_path: Optional[str] = None,
                 audio_offset_s: float = 0.0) -> None:
        self.path, self.fps, self.audio_path, self.audio_offset_s = path, fps, audio_path, audio_offset_s
        self.frames = 0

    def __enter__(self) -> "VideoWriter":
        out_dir = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(out_dir, exist_ok=True)
        self._stack = contextlib.ExitStack()
        try:
            scratch = self._stack.enter_context(tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=out_dir))
            self._final = self._stack.enter_context(atomic_path(self.path))
            self._silent = os.path.join(scratch, "silent.mp4")
            self._writer = self._stack.enter_context(imageio.get_writer(
                self._silent, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
                ffmpeg_log_level="error"))
        except BaseException:
            self._stack.close()
            raise
        return self

    def append(self, frame) -> None:
        """Encodes one (H, W, 3) frame, float in [0, 1] (tensor or array) or uint8."""
        self._writer.append_data(to_uint8(frame))
        self.frames += 1

    def __exit__(self, kind, value, traceback) -> bool:
        # The stack closes the encoder, then renames the finished file into place (or, on an
        # error, drops it), then removes the scratch folder.
        if kind is not None:
            self._stack.__exit__(kind, value, traceback)
            return False
        with self._stack:
            self._finish()
        return False

    def _finish(self) -> None:
        self._writer.close()
        n = self.frames
        if n == 0:
            raise ValueError("write_video: no frames given")
        if self.audio_path is None:
            os.replace(self._silent, self._final)
            return
        if not os.path.isfile(self.audio_path):
            raise FileNotFoundError(f"write_video: audio file not found: {self.audio_path}")
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", self._silent,
               "-ss", f"{self.audio_offset_s:.3f}", "-i", self.audio_path, "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "copy", "-c:a", "aac", "-t", f"{n / self.fps:.3f}", "-f", "mp4", self._final]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to mux audio: {result.stderr.strip()}")


def write_video(frames: Iterable, path: str, fps: float = 25.0, audio_path: Optional[str] = None,
                audio_offset_s: float = 0.0) -> str:
    """Writes an iterable of (H, W, 3) frames (float in [0, 1] or uint8) with :class:`VideoWriter`
    (same arguments) and returns ``path``; frames are encoded as the iterable yields them."""
    with VideoWriter(path, fps, audio_path, audio_offset_s) as video:
        for frame in frames:
            video.append(frame)
    return path


def probe_streams(path: str) -> str:
    """ffmpeg's description of a media file's streams (for tests and logs)."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                            capture_output=True, text=True)
    return "\n".join(line.strip() for line in result.stderr.splitlines() if "Stream #" in line)
