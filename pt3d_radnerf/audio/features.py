"""Audio features without model downloads: 50 Hz log-mel filterbanks in RAD-NeRF's window layout.

Alignment (the same arithmetic as RAD-NeRF's ``F.unfold(kernel 16, stride 2, padding 8)`` over its
50 Hz ASR logits):

- log-mel frame ``j`` is centred on sample ``320 j`` (time ``20 j`` ms; ``torch.stft(center=True)``
  with zero padding), so ``T`` samples give ``F = T // 320 + 1`` frames;
- 25 fps video frame ``i`` (time ``40 i`` ms) gets the 16 feature rows ``2i - 8 .. 2i + 7``
  (320 ms; its own time is row 8); rows outside ``[0, F)`` are padding: zeros in
  ``window_features`` (RAD-NeRF pads its logits with zeros), the log-mel of silence
  (``log(floor)``) in ``logmel_windows``, because a log energy of 0 would read as a loud frame;
- a clip of ``T`` samples spans ``N = ceil(T / 640)`` video frames by default.
"""

from typing import Optional

import numpy as np
import torch

from .io import SAMPLE_RATE, load_audio_16k

HOP = 320  # 20 ms at 16 kHz -> 50 feature frames per second
WIN = 400  # 25 ms Hann analysis window (zero-padded to N_FFT)
N_FFT = 512
FEATURES_PER_VIDEO_FRAME = 2  # 50 Hz features / 25 fps video
WINDOW = 16  # features per video frame (320 ms)


def num_video_frames(num_samples: int) -> int:
    """Number of 25 fps video frames N a clip of ``num_samples`` 16 kHz samples spans (ceil)."""
    return -(-int(num_samples) // (HOP * FEATURES_PER_VIDEO_FRAME))


def log_mel(samples: np.ndarray, n_mels: int = 80, fmin: float = 20.0, fmax: float = 7600.0,
            floor: float = 1e-5) -> torch.Tensor:
    """Log-mel filterbank energies at 50 Hz.

    STFT by ``torch.stft`` (Hann 400 / n_fft 512 / hop 320), power spectrum, mel filterbank by
    ``librosa.filters.mel`` (Slaney mel scale, Slaney area normalisation), natural log.

    Args:
        samples: (T,) float mono audio at 16 kHz (T >= 1).
        n_mels: number of mel bands C.
        fmin, fmax: filterbank edges in Hz, 0 <= fmin < fmax <= 8000.
        floor: energies are clamped to at least this before the log (silence -> log(floor)).

    Returns:
        (F, n_mels) float32 with F = T // 320 + 1 (frame j centred at 20 j ms).
    """
    import librosa.filters

    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if x.dim() != 1:
        raise ValueError(f"samples must be 1-D mono audio, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("samples is empty")
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or Inf")
    if int(n_mels) != n_mels or n_mels < 1:
        raise ValueError(f"n_mels must be a positive integer, got {n_mels}")
    if not 0.0 <= fmin < fmax <= SAMPLE_RATE / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {SAMPLE_RATE // 2}, got fmin={fmin}, fmax={fmax}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, win_length=WIN,
                      window=torch.hann_window(WIN), center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.abs() ** 2  # (N_FFT // 2 + 1, F)
    mel = torch.as_tensor(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=int(n_mels),
                                              fmin=fmin, fmax=fmax), dtype=torch.float32)
    return torch.log(torch.clamp(mel @ power, min=floor)).T.contiguous()


def window_features(features: torch.Tensor, num_frames: Optional[int] = None,
                    pad_value: float = 0.0) -> torch.Tensor:
    """Cuts 50 Hz features into RAD-NeRF's per-video-frame windows.

    Args:
        features: (F, C) features at 50 Hz.
        num_frames: number of 25 fps video frames N (default ceil(F / 2)); frames past the end
            of the features get padding-only windows, features past frame N's window are unused.
        pad_value: value of the rows outside [0, F) (RAD-NeRF: 0).

    Returns:
        (N, 16, C): window i holds feature rows 2i-8 .. 2i+7, ``pad_value`` where out of range.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (F, C), got {tuple(features.shape)}")
    f, c = features.shape
    n = (f + 1) // 2 if num_frames is None else int(num_frames)
    if n < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    half = WINDOW // 2
    padded = features.new_full((2 * n + WINDOW, c), pad_value)  # row r holds feature r - 8
    take = min(f, 2 * n + half)
    padded[half : half + take] = features[:take]
    return padded.unfold(0, WINDOW, FEATURES_PER_VIDEO_FRAME)[:n].transpose(1, 2).contiguous()


def logmel_windows(samples: np.ndarray, num_frames: Optional[int] = None, n_mels: int = 80,
                   floor: float = 1e-5) -> torch.Tensor:
    """(N, 16, n_mels) log-mel windows of (T,) 16 kHz samples, one per 25 fps video frame
    (N defaults to ``num_video_frames(T)``); outside the clip rows hold silence, ``log(floor)``."""
    if num_frames is None:
        num_frames = num_video_frames(len(samples))
    feats = log_mel(samples, n_mels=n_mels, floor=floor)
    return window_features(feats, num_frames, pad_value=float(np.log(floor)))


def logmel_windows_from_file(path: str, num_frames: Optional[int] = None, n_mels: int = 80,
                             floor: float = 1e-5) -> torch.Tensor:
    """(N, 16, n_mels) log-mel windows of an audio file (any rate / channel count), one per 25 fps
    video frame (N defaults to the number of 40 ms frames the audio spans, rounded up)."""
    return logmel_windows(load_audio_16k(path), num_frames, n_mels, floor)
