"""Metrics against closed forms / pytorch-free computations, and MP4 export with audio."""

import math
import wave

import numpy as np
import pytest
import torch

from pt3d_radnerf.training import pearson, probe_streams, psnr, region_psnr, ssim, write_video


def test_psnr_closed_form():
    a = torch.zeros(2, 8, 8, 3)
    b = torch.full_like(a, 0.1)  # mse = 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a) == math.inf
    b[:, 2:4, 1:5] = 0.0
    assert region_psnr(a, b, (1, 5, 2, 4)) == math.inf


def test_ssim_properties():
    torch.manual_seed(0)
    x = torch.rand(1, 32, 32, 3)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, noisy) < 0.9
    # Constant images with different means: SSIM reduces to the luminance term (2ab+c1)/(a^2+b^2+c1).
    a, b = torch.full((1, 16, 16, 1), 0.3), torch.full((1, 16, 16, 1), 0.6)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.18 + c1) / (0.09 + 0.36 + c1), rel=1e-9)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100)
    b = a + 0.5 * b
    assert pearson(torch.tensor(a), torch.tensor(b)) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert pearson(torch.ones(5), torch.arange(5.0)) == 0.0
    with pytest.raises(ValueError):
        pearson(torch.ones(3), torch.ones(4))


def _write_tone(path, seconds=1.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def test_write_video_with_audio(tmp_path):
    wav = tmp_path / "a.wav"
    _write_tone(wav)
    frames = [torch.full((32, 48, 3), i / 10) for i in range(10)]
    out = write_video(frames, str(tmp_path / "v.mp4"), fps=25, audio_path=str(wav))
    streams = probe_streams(out)
    assert "Video: h264" in streams and "Audio: aac" in streams
    silent = write_video(frames, str(tmp_path / "s.mp4"), fps=25)
    assert "Audio" not in probe_streams(silent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "s.mp4", "v.mp4"]  # no temp leftovers
    with pytest.raises(FileNotFoundError):
        write_video(frames, str(tmp_path / "x.mp4"), audio_path=str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="no frames"):
        write_video([], str(tmp_path / "y.mp4"))
