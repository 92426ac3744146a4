"""The built-in synthetic talking head: layout, determinism, audio-driven mouth, atomic cache."""

import os

import numpy as np
import pytest
import torch

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
    assert os.listdir(os.path.join(tmp_path, "synthetic")) == []
