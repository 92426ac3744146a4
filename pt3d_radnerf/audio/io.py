"""Reading audio: any file libsndfile reads (wav, flac, ogg, ...), mixed to mono, resampled to 16 kHz."""

import os
from math import gcd
from typing import Tuple

import numpy as np

SAMPLE_RATE = 16000  # every ASR front end RAD-NeRF uses works at 16 kHz


def read_audio(path: str) -> Tuple[np.ndarray, int]:
    """Reads an audio file with soundfile (libsndfile) and mixes it down to mono.

    Returns:
        ``(samples, sample_rate)``: samples (T,) float32 in [-1, 1] (integer PCM is scaled by
        libsndfile), the channel mean for multi-channel files.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or empty file, or NaN/Inf samples (float formats); naming the file.
    """
    import soundfile

    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (T, channels)
    except Exception as err:  # libsndfile raises its own error types
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} has no samples")
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not np.isfinite(mono).all():
        raise ValueError(f"audio file {path} contains NaN or Inf samples")
    return mono, int(rate)


def resample(samples: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling with scipy.signal.resample_poly (Kaiser-windowed FIR anti-aliasing).

    Args:
        samples: (T,) mono samples.
        rate, target_rate: integer sample rates in Hz.

    Returns:
        (ceil(T * target_rate / rate),) float32; the input itself (as float32) when the rates match.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D mono audio, got shape {samples.shape}")
    for name, value in (("rate", rate), ("target_rate", target_rate)):
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate, got {value}")
    rate, target_rate = int(rate), int(target_rate)
    if rate == target_rate:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(rate, target_rate)
    return resample_poly(samples.astype(np.float64), target_rate // g, rate // g).astype(np.float32)


def load_audio_16k(path: str) -> np.ndarray:
    """(T,) float32 mono samples at 16 kHz from any audio file libsndfile reads."""
    samples, rate = read_audio(path)
    return resample(samples, rate, SAMPLE_RATE)


def write_wav(path: str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Writes (T,) mono or (T, channels) float samples in [-1, 1] as 16-bit PCM (clipped)."""
    import soundfile

    soundfile.write(path, np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
