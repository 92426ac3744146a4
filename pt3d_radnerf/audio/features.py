"""Audio features without model downloads: log-mel filterbanks at 50 Hz, RAD-NeRF's windows.

RAD-NeRF's ASR features come at 50 Hz (one per 20 ms = 320 samples at 16 kHz); each 25 fps video
frame i gets the 16 features centred on its time, i.e. feature rows 2i-8 .. 2i+7 (zero rows
outside the clip). That is ``unfold(window=16, stride=2, padding=8)`` over time.
"""

from typing import Optional

import numpy as np
import torch

from .io import SAMPLE_RATE, load_audio_16k

HOP = 320  # 20 ms at 16 kHz -> 50 feature frames per second
WIN = 400  # 25 ms analysis window
N_FFT = 512
FEATURES_PER_VIDEO_FRAME = 2  # 50 Hz features / 25 fps video
WINDOW = 16  # features per video frame (320 ms)


def log_mel(samples: np.ndarray, n_mels: int = 80, fmin: float = 20.0, fmax: float = 7600.0,
            floor: float = 1e-5) -> torch.Tensor:
    """Log-mel filterbank energies at 50 Hz.

    Args:
        samples: (T,) float mono audio at 16 kHz.
        n_mels: number of mel bands C (librosa's Slaney-style filterbank).
        floor: energies are clamped to at least this before the log (silence -> log(floor)).

    Returns:
        (F, n_mels) float32 with F = T // 320 + 1 (frames centred at multiples of 20 ms).
    """
    import librosa.filters

    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if x.dim() != 1:
        raise ValueError(f"samples must be 1-D mono audio, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("samples is empty")
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or Inf")
    spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, win_length=WIN,
                      window=torch.hann_window(WIN), center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.abs() ** 2  # (N_FFT // 2 + 1, F)
    mel = torch.as_tensor(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels,
                                              fmin=fmin, fmax=fmax), dtype=torch.float32)
    return torch.log(torch.clamp(mel @ power, min=floor)).T.contiguous()


def window_features(features: torch.Tensor, num_frames: Optional[int] = None) -> torch.Tensor:
    """Cuts 50 Hz features into RAD-NeRF's per-video-frame windows.

    Args:
        features: (F, C) features at 50 Hz.
        num_frames: number of 25 fps video frames N (default ceil(F / 2)).

    Returns:
        (N, 16, C): window i holds feature rows 2i-8 .. 2i+7, zero where out of range.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (F, C), got {tuple(features.shape)}")
    f, c = features.shape
    n = (f + 1) // 2 if num_frames is None else int(num_frames)
    half = WINDOW // 2
    padded = features.new_zeros(2 * n + WINDOW, c)
    take = min(f, 2 * n + half)
    padded[half : half + take] = features[:take]
    return padded.unfold(0, WINDOW, FEATURES_PER_VIDEO_FRAME)[:n].transpose(1, 2).contiguous()


def logmel_windows_from_file(path: str, num_frames: Optional[int] = None, n_mels: int = 80) -> torch.Tensor:
    """(N, 16, n_mels) log-mel windows of an audio file, one per 25 fps video frame
    (N defaults to the number of 40 ms frames the audio spans, rounded up)."""
    samples = load_audio_16k(path)
    if num_frames is None:
        num_frames = -(-len(samples) // (HOP * FEATURES_PER_VIDEO_FRAME))
    return window_features(log_mel(samples, n_mels=n_mels), num_frames)
