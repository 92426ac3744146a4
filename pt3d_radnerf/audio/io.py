"""Reading audio: any file libsndfile reads, mixed to mono, resampled to 16 kHz."""

from math import gcd
from typing import Tuple

import numpy as np

SAMPLE_RATE = 16000  # every ASR front end RAD-NeRF uses works at 16 kHz


def read_audio(path: str) -> Tuple[np.ndarray, int]:
    """Returns ``(samples (T,) float32 mono in [-1, 1], sample_rate)``.

    Raises:
        FileNotFoundError / ValueError: missing, unreadable or empty files, naming the file.
    """
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # libsndfile raises its own error types
        if not __import__("os").path.exists(path):
            raise FileNotFoundError(f"audio file not found: {path}") from err
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} has no samples")
    return data.mean(axis=1).astype(np.float32), int(rate)


def resample(samples: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy) from ``rate`` to ``target_rate``: (T,) -> (T * target / rate,)."""
    if rate == target_rate:
        return samples.astype(np.float32, copy=False)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target_rate))
    return resample_poly(samples, target_rate // g, rate // g).astype(np.float32)


def load_audio_16k(path: str) -> np.ndarray:
    """(T,) float32 mono samples at 16 kHz from any audio file."""
    samples, rate = read_audio(path)
    return resample(samples, rate, SAMPLE_RATE)


def write_wav(path: str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Writes (T,) float samples in [-1, 1] as 16-bit PCM."""
    import soundfile

    soundfile.write(path, np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
