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
    audio.write_wav(path, tone(500.0, 0.5, 48000), 48000)
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
    with pytest.raises(ValueError, match=r"aud_eo.npy.*\(10, 16, 29\).*'esperanto' features \(as its name says\) are stored as \(N, 16, 44\).*'deepspeech'"):
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
    with pytest.raises(ValueError, match=r"ints.npy.*floating-point"):  # type inferred from the shape
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


# ---- shapes, alignment, validation ----------------------------------------------------------


@pytest.mark.parametrize("n", [1, 319, 320, 640, 641, 16000, 16001])
def test_log_mel_and_window_shapes(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    feats = audio.log_mel(x, n_mels=24)
    assert feats.shape == (n // 320 + 1, 24) and torch.isfinite(feats).all()
    want_frames = -(-n // 640)  # ceil(T / 640): 40 ms per 25 fps video frame
    assert audio.num_video_frames(n) == want_frames
    assert audio.logmel_windows(x, n_mels=24).shape == (want_frames, 16, 24)
    assert audio.logmel_windows(x, num_frames=3, n_mels=24).shape == (3, 16, 24)


@pytest.mark.parametrize("click_frame", [0, 7, 10, 33])
def test_click_lands_in_the_expected_window_rows(click_frame):
    # A short burst at the centre of 50 Hz frame j (sample 320 j) lies inside only that frame's
    # 400-sample analysis window (neighbours are centred 320 samples away), so it must show up
    # exactly in window rows k = j - 2 i + 8 of video frames i, computed here by brute force.
    n = 16000
    x = np.zeros(n, dtype=np.float32)
    s = 320 * click_frame
    x[s : s + 3] = [0.5, -0.8, 0.5]
    floor = float(np.log(1e-5))
    win = audio.logmel_windows(x, n_mels=20)
    assert win.shape == (25, 16, 20)
    loud = win.amax(-1) > floor + 1.0  # (N, 16)
    want = torch.zeros_like(loud)
    for i in range(win.shape[0]):
        for k in range(16):
            want[i, k] = (2 * i - 8 + k) == click_frame
    assert torch.equal(loud, want)
    assert want.any()
    # Rows outside the clip are silence (the log floor), not log(1) = 0.
    assert win[0, :8].eq(floor).all() and win[-1, 11:].eq(floor).all()
    # window_features itself pads like RAD-NeRF: zeros, or any pad_value.
    f = torch.ones(5, 2)
    assert audio.window_features(f)[0, :8].eq(0).all()
    assert audio.window_features(f, pad_value=-3.0)[0, :8].eq(-3.0).all()


def test_stereo_is_mixed_down(tmp_path):
    import soundfile

    left = tone(500.0, 0.5, 16000, amp=0.6)
    path = str(tmp_path / "st.wav")
    soundfile.write(path, np.stack([left, -left], axis=1), 16000, subtype="PCM_16")
    mono, rate = audio.read_audio(path)
    assert rate == 16000 and mono.shape == (8000,) and np.abs(mono).max() < 1e-4  # L + R cancel
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_16")
    mono, _ = audio.read_audio(path)
    np.testing.assert_allclose(mono, left / 2, atol=1e-4)


def test_read_audio_rejects_non_finite_and_bad_rates(tmp_path):
    import soundfile

    path = str(tmp_path / "f.wav")
    x = tone(300.0, 0.1)
    x[10] = np.nan
    soundfile.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="f.wav.*NaN"):
        audio.read_audio(path)
    with pytest.raises(ValueError, match="rate"):
        audio.resample(tone(300.0, 0.1), 0)
    with pytest.raises(ValueError, match="target_rate"):
        audio.resample(tone(300.0, 0.1), 16000, 22050.5)
    with pytest.raises(ValueError, match="1-D"):
        audio.resample(np.zeros((10, 2)), 48000)


def test_log_mel_rejects_bad_arguments():
    x = tone(300.0, 0.1)
    with pytest.raises(ValueError, match="n_mels"):
        audio.log_mel(x, n_mels=0)
    with pytest.raises(ValueError, match="fmax"):
        audio.log_mel(x, fmax=9000.0)
    with pytest.raises(ValueError, match="1-D"):
        audio.log_mel(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="num_frames"):
        audio.window_features(torch.zeros(5, 3), num_frames=-1)


def test_feature_type_registry():
    widths = {"deepspeech": (16, 29), "esperanto": (16, 44), "wav2vec": (16, 32), "hubert": (2, 1024),
              "logmel": (16, 80)}
    for name, shape in widths.items():
        kind = audio.feature_type(name)
        assert (kind.window, kind.width) == shape
    # RAD-NeRF / ER-NeRF --asr_model strings resolve by substring like theirs do.
    assert audio.feature_type("cpierse/wav2vec2-large-xlsr-53-esperanto").name == "esperanto"
    assert audio.feature_type("facebook/wav2vec2-large-960h-lv60-self").name == "wav2vec"
    assert audio.feature_type("facebook/hubert-large-ls960-ft").name == "hubert"
    assert audio.feature_type("logmel", width=40).width == 40
    assert audio.feature_type("deepspeech", width=29).width == 29
    with pytest.raises(ValueError, match="29-d"):
        audio.feature_type("deepspeech", width=40)
    with pytest.raises(ValueError, match="n_mels"):
        audio.feature_type("logmel", width=0)
    with pytest.raises(TypeError):
        audio.feature_type(29)


def test_check_features_names_both_types():
    esperanto = audio.feature_type("esperanto")
    with pytest.raises(ValueError, match=r"'esperanto'.*\(N, 16, 44\).*'deepspeech'"):
        audio.check_features(torch.zeros(4, 16, 29), esperanto)
    with pytest.raises(ValueError, match="swapped"):
        audio.check_features(torch.zeros(4, 44, 16), esperanto)
    with pytest.raises(ValueError, match="argmax label"):
        audio.check_features(torch.zeros(4, 16), esperanto)
    # Attention windows (B, 8, W, C).
    audio.check_features(torch.zeros(3, 8, 2, 1024), audio.feature_type("hubert"), ndim=4)
    with pytest.raises(ValueError, match=r"\(B, 8, 2, 1024\)"):
        audio.check_features(torch.zeros(3, 8, 16, 1024), audio.feature_type("hubert"), ndim=4)
    audio.check_features(torch.zeros(3, 16, 40), audio.feature_type("logmel", width=40))


def test_feature_files_more_malformed(tmp_path):
    def save(name, arr):
        path = tmp_path / name
        np.save(path, arr)
        return str(path)

    half = audio.load_feature_file(save("aud_ds.npy", np.random.rand(3, 16, 29).astype(np.float16)))
    assert half.dtype == torch.float32 and half.shape == (3, 16, 29)
    with pytest.raises(ValueError, match=r"aud_hu.npy.*\(N, 2, 1024\)"):
        audio.load_feature_file(save("aud_hu.npy", np.zeros((3, 16, 1024), np.float32)))
    with pytest.raises(ValueError, match=r"aud_ds.npy.*argmax label"):
        audio.load_feature_file(save("aud_ds.npy", np.zeros((3, 16), np.float32)))
    with pytest.raises(ValueError, match=r"aud_ds.npy.*\(N, 16, 29\)"):
        audio.load_feature_file(save("aud_ds.npy", np.zeros((3, 16, 29, 1), np.float32)))
    with pytest.raises(ValueError, match="no frames"):
        audio.load_feature_file(save("aud_ds.npy", np.zeros((0, 16, 29), np.float32)))
    inf = np.zeros((3, 16, 29), np.float32)
    inf[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        audio.load_feature_file(save("aud_ds.npy", inf))
    with pytest.raises(ValueError, match="cannot read"):
        audio.load_feature_file(save("aud_ds.npy", np.array([{"a": 1}], dtype=object)))
    zipped = tmp_path / "aud_eo.npy"
    with open(zipped, "wb") as fh:
        np.savez(fh, a=np.zeros((3, 16, 44), np.float32))
    with pytest.raises(ValueError, match="single .npy array"):
        audio.load_feature_file(str(zipped))
    # An explicit kind overrides the file name (cross-driven audio).
    assert audio.load_feature_file(save("other.npy", np.zeros((2, 16, 44))), kind="esperanto").shape == (2, 16, 44)


def test_attention_windows_match_index_arithmetic():
    n, w, c = 7, 3, 2
    feats = torch.randn(n, w, c, requires_grad=True)
    idx = torch.arange(n)
    out = audio.attention_windows(feats, idx)
    assert out.shape == (n, 8, w, c)
    for b in range(n):
        for k in range(8):
            j = b - 4 + k
            want = feats[j] if 0 <= j < n else torch.zeros(w, c)
            assert torch.equal(out[b, k], want)
    # Each frame's gradient counts how many windows it appears in.
    out.sum().backward()
    counts = torch.tensor([sum(1 for b in range(n) for k in range(8) if b - 4 + k == j) for j in range(n)])
    torch.testing.assert_close(feats.grad, counts.float()[:, None, None].expand(n, w, c))
    # Python ints / lists, other sizes, empty batches.
    assert torch.equal(audio.attention_windows(feats, 3), out[3:4])
    assert torch.equal(audio.attention_windows(feats, [0, 6]), out[[0, 6]])
    assert torch.equal(audio.attention_windows(feats, [2], size=4)[0], out[2, 2:6])
    assert audio.attention_windows(feats, torch.zeros(0, dtype=torch.long)).shape == (0, 8, w, c)
    with pytest.raises(TypeError, match="integers"):
        audio.attention_windows(feats, torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"\(N, W, C\)"):
        audio.attention_windows(feats[0], [0])
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        audio.attention_windows(feats, [-1])
