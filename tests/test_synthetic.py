"""The built-in synthetic talking head: layout, determinism, audio-driven mouth, atomic cache."""

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pt3d_radnerf.atomic import TEMP_PREFIX
from pt3d_radnerf.audio import read_audio
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data import synthetic
from pt3d_radnerf.data.head_mesh import build_head
from pt3d_radnerf.training import pearson

CONFIG = synthetic.SyntheticConfig(size=64, seconds=2.0, seed=3)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path_factory.mktemp("cache")), progress=False)


def test_layout_and_loader(dataset_root):
    for name in ("aud.wav", "bc.jpg", "transforms_train.json", "transforms_val.json", "mouth_openness.npy"):
        assert os.path.isfile(os.path.join(dataset_root, name)), name
    train = TalkingHeadDataset(dataset_root, "train")
    val = TalkingHeadDataset(dataset_root, "val")
    assert len(train) + len(val) == 50 and len(val) == 6
    assert train.audio_features.shape == (50, 16, 80)  # log-mel computed from aud.wav
    item = val[0]
    assert item["image"].shape == (64, 64, 3) and item["aud_index"] == 44


def test_head_fits_radnerf_box():
    head = build_head(openness=1.0, eye_open=1.0)
    pts = synthetic.tracker_to_ngp(head.verts)
    box = np.array([1.0, 0.5, 1.0])
    assert (np.abs(pts) <= box).all(), np.abs(pts).max(0)


def test_mouth_follows_the_audio(dataset_root):
    openness = np.load(os.path.join(dataset_root, "mouth_openness.npy"))
    samples, rate = read_audio(os.path.join(dataset_root, "aud.wav"))
    per_frame = rate // 25
    rms = np.sqrt((samples[: 50 * per_frame].reshape(50, per_frame) ** 2).mean(1))
    assert pearson(torch.tensor(rms), torch.tensor(openness)) > 0.8
    # Dark mouth-interior pixels inside the lips rectangle grow with the ground-truth openness.
    ds = TalkingHeadDataset(dataset_root, "train")
    dark = []
    for i in range(len(ds)):
        x0, x1, y0, y1 = ds.lips_rects[i]
        patch = ds.image(i)[y0:y1, x0:x1]
        dark.append(float((patch.mean(-1) < 0.25).sum()))
    assert pearson(torch.tensor(dark), torch.tensor(openness[: len(ds)])) > 0.8


def test_deterministic_and_cached(tmp_path, dataset_root):
    again = synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path), progress=False)
    assert again != dataset_root
    for name in ("mouth_openness.npy", "ori_imgs/7.lms", "gt_imgs/7.jpg", "aud.wav"):
        with open(os.path.join(again, name), "rb") as a, open(os.path.join(dataset_root, name), "rb") as b:
            assert a.read() == b.read(), name
    stamp = os.path.getmtime(os.path.join(again, "config.json"))
    assert synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path), progress=False) == again
    assert os.path.getmtime(os.path.join(again, "config.json")) == stamp


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.render_frame

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_frame", flaky)
    config = synthetic.SyntheticConfig(size=32, seconds=1.0, seed=1)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_synthetic(config, cache_dir=str(tmp_path), progress=False)
    assert os.listdir(os.path.join(tmp_path, "synthetic")) == [synthetic.LOCK_NAME]


def make_stale(folder):
    names = [TEMP_PREFIX + "dead", synthetic.LEGACY_TEMP_PREFIX + "old"]
    for name in names:
        os.makedirs(os.path.join(folder, name, "gt_imgs"))
        with open(os.path.join(folder, name, "gt_imgs", "0.jpg"), "wb") as f:
            f.write(b"x" * 1000)
    old = time.time() - synthetic.LEGACY_MIN_AGE_S - 60
    os.utime(os.path.join(folder, names[1]), (old, old))
    os.makedirs(os.path.join(folder, synthetic.LEGACY_TEMP_PREFIX + "recent"))  # maybe an old version's live one
    with open(os.path.join(folder, TEMP_PREFIX + "file.json"), "w") as f:
        f.write("{")
    return names + [TEMP_PREFIX + "file.json"]


def test_stale_temporaries_removed_on_next_start(dataset_root):
    folder = os.path.dirname(dataset_root)
    names = make_stale(folder)
    # While a generator holds the lock, nothing is removed (its temporary may be live).
    with open(os.path.join(folder, synthetic.LOCK_NAME), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        assert synthetic.remove_stale(folder) == 0
        assert synthetic.ensure_synthetic(CONFIG, cache_dir=os.path.dirname(folder), progress=False) == dataset_root
        assert set(names) <= set(os.listdir(folder))
    # The next start with no generator running removes them all and keeps the dataset.
    assert synthetic.ensure_synthetic(CONFIG, cache_dir=os.path.dirname(folder), progress=False) == dataset_root
    assert sorted(os.listdir(folder)) == sorted([synthetic.LOCK_NAME, os.path.basename(dataset_root),
                                                 synthetic.LEGACY_TEMP_PREFIX + "recent"])


GENERATOR = textwrap.dedent("""
    import sys, time
    from pt3d_radnerf.data import synthetic
    real = synthetic.render_frame
    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)
    synthetic.render_frame = slow
    synthetic.ensure_synthetic(synthetic.SyntheticConfig(size=32, seconds=1.0, seed=5), cache_dir=sys.argv[1],
                               progress=False)
""")


def test_kill_9_during_generation(tmp_path):
    folder = os.path.join(str(tmp_path), "synthetic")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", GENERATOR, str(tmp_path)], env=env)
    try:
        deadline = time.time() + 300
        temps = []
        while time.time() < deadline and proc.poll() is None:
            temps = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)] if os.path.isdir(folder) else []
            if temps and os.path.isfile(os.path.join(folder, temps[0], "gt_imgs", "1.jpg")):
                break
            time.sleep(0.1)
        assert proc.poll() is None and temps, "the generator did not start writing"
        assert synthetic.remove_stale(folder) == 0  # a live generator's temporary is kept
        assert os.path.isdir(os.path.join(folder, temps[0]))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert os.path.isdir(os.path.join(folder, temps[0]))  # what kill -9 leaves behind
    root = synthetic.ensure_synthetic(synthetic.SyntheticConfig(size=32, seconds=1.0, seed=5),
                                      cache_dir=str(tmp_path), progress=False)
    assert sorted(os.listdir(folder)) == sorted([synthetic.LOCK_NAME, os.path.basename(root)])
    assert len(TalkingHeadDataset(root, "train")) + len(TalkingHeadDataset(root, "val")) == 25
