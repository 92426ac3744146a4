"""Audio I/O, log-mel features, RAD-NeRF windows and feature files."""

import numpy as np
import pytest
import torch

from pt3d_radnerf import audio


def tone(freq, seconds=1.0, rate=16000, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def hz_to_mel_slaney(f):
    # Slaney mel scale (librosa default): linear below 1 kHz, log above; written out here.
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_log_mel_tone_peaks_in_its_band(freq):
    feats = audio.log_mel(tone(freq), n_mels=40)
    assert feats.shape == (16000 // 320 + 1, 40)
    # Band centres: 42 equally spaced mel points between fmin and fmax; band k is centred on k+1.
    mels = np.linspace(hz_to_mel_slaney(20.0), hz_to_mel_slaney(7600.0), 42)
    want = int(np.argmin(np.abs(mels[1:-1] - hz_to_mel_slaney(freq))))
    got = int(feats[5:-5].mean(0).argmax())
    assert abs(got - want) <= 1


def test_log_mel_silence_is_the_floor():
    feats = audio.log_mel(np.zeros(3200, dtype=np.float32), n_mels=8, floor=1e-5)
    assert torch.allclose(feats, torch.full_like(feats, float(np.log(1e-5))))
    with pytest.raises(ValueError, match="NaN"):
        audio.log_mel(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        audio.log_mel(np.zeros(0, dtype=np.float32))


def test_window_alignment_matches_index_arithmetic():
    f, c = 37, 3
    feats = torch.arange(f * c, dtype=torch.float32).view(f, c) + 1
    win = audio.window_features(feats)
    assert win.shape == ((f + 1) // 2, 16, c)
    for i in range(win.shape[0]):
        for k in range(16):
            row = 2 * i - 8 + k
            want = feats[row] if 0 <= row < f else torch.zeros(c)
            assert torch.equal(win[i, k], want)
    assert audio.window_features(feats, num_frames=30).shape == (30, 16, c)


def test_resample_preserves_tone_and_length():
    for rate in (44100, 48000, 8000):
        x = tone(440.0, 1.0, rate)
        y = audio.resample(x, rate)
        assert abs(len(y) - 16000) <= 1
        spectrum = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spectrum) * 16000 / len(y) - 440.0) < 2.0


def test_read_write_round_trip(tmp_path):
    path = str(tmp_path / "a.wav")
    stereo_src = tone(500.0, 0.5, 48000)
    audio.write_wav(path, stereo_src, 48000)
    samples = audio.load_audio_16k(path)
    assert abs(len(samples) - 8000) <= 1 and np.abs(samples).max() > 0.4
    feats = audio.logmel_windows_from_file(path, num_frames=12, n_mels=16)
    assert feats.shape == (12, 16, 16)
    with pytest.raises(FileNotFoundError):
        audio.read_audio(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.wav"):
        audio.read_audio(str(bad))


def test_feature_files(tmp_path):
    good = tmp_path / "aud_ds.npy"
    np.save(good, np.random.rand(10, 16, 29).astype(np.float32))
    feats = audio.load_feature_file(str(good))
    assert feats.shape == (10, 16, 29) and feats.dtype == torch.float32
    hu = tmp_path / "aud_hu.npy"
    np.save(hu, np.random.rand(4, 2, 1024))
    assert audio.load_feature_file(str(hu)).shape == (4, 2, 1024)

    wrong = tmp_path / "aud_eo.npy"
    np.save(wrong, np.random.rand(10, 16, 29).astype(np.float32))
    with pytest.raises(ValueError, match=r"configured for 'esperanto'.*\(N, 16, 44\)"):
        audio.load_feature_file(str(wrong))
    nan = tmp_path / "aud.npy"
    arr = np.random.rand(3, 16, 32)
    arr[1, 2, 3] = np.nan
    np.save(nan, arr)
    with pytest.raises(ValueError, match="NaN"):
        audio.load_feature_file(str(nan))
    ints = tmp_path / "ints.npy"
    np.save(ints, np.ones((3, 16, 32), dtype=np.int64))
    with pytest.raises(ValueError, match="floating-point"):
        audio.load_feature_file(str(ints), kind="wav2vec")
    with pytest.raises(ValueError, match="cannot infer"):
        audio.load_feature_file(str(ints))
    with pytest.raises(FileNotFoundError):
        audio.load_feature_file(str(tmp_path / "nope.npy"))
    with pytest.raises(ValueError, match="unknown audio feature type"):
        audio.feature_type("mfcc")


def test_attention_windows_pad_with_zeros():
    feats = torch.arange(1, 6, dtype=torch.float32)[:, None, None].expand(5, 16, 2).clone()
    out = audio.attention_windows(feats, torch.tensor([0, 2, 4]))
    assert out.shape == (3, 8, 16, 2)
    first = out[:, :, 0, 0]
    # frame idx sees idx-4 .. idx+3; values are frame number + 1, zero outside [0, 5).
    want = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], [0, 0, 1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(first, want)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        audio.attention_windows(feats, torch.tensor([5]))
