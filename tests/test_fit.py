"""Training loop, checkpoints, evaluation and the example CLI on a tiny synthetic talking head."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pt3d_radnerf.audio.io import write_wav
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic
from pt3d_radnerf.training.evaluate import ground_truth_openness, mouth_openness_proxy
from pt3d_radnerf.training.metrics import pearson, psnr
from pt3d_radnerf.training import TalkingHeadTrainer

from .fit_helpers import ROOT, differing, tiny_config, training_state


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A 2-second, 32 x 32 synthetic talking head (50 frames; seconds to generate)."""
    return ensure_synthetic(SyntheticConfig(size=32, seconds=2.0), cache_dir=str(tmp_path_factory.mktemp("cache")),
                            progress=False)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Resume must be exact at any fixed thread count, not only 1 (the CLI default is all cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def test_resume_is_bit_for_bit(tiny_root, tmp_path, threads):
    data = TalkingHeadDataset(tiny_root, "train")
    full = TalkingHeadTrainer(data, tiny_config(), str(tmp_path / "full"))
    full.fit(progress=False)

    # "Killed" at step 5: the last checkpoint is step 3, steps 4 and 5 are lost and redone.
    first = TalkingHeadTrainer(data, tiny_config(), str(tmp_path / "cut"))
    first.fit(progress=False, stop_at=5)
    assert first.checkpointer.get_checkpoint_file().endswith("model_0000003.pth")
    torch.manual_seed(12345)  # a different process state must not matter
    torch.rand(7)
    second = TalkingHeadTrainer(data, tiny_config(), str(tmp_path / "cut"))
    second.fit(progress=False, resume=True)
    assert second.progress.step == 8

    a, b = training_state(full), training_state(second)
    assert any(k.startswith("grid.") for k in a) and any(k.startswith("optimizer.state") for k in a)
    assert not differing(a, b)
    # The run did train (the comparison is not between two untouched models).
    fresh = TalkingHeadTrainer(data, tiny_config(), str(tmp_path / "fresh"))  # built, not trained
    assert not torch.equal(fresh.field.encoder.embeddings, full.field.encoder.embeddings)


def test_interrupted_save_keeps_last_checkpoint(tiny_root, tmp_path, monkeypatch):
    data = TalkingHeadDataset(tiny_root, "train")
    trainer = TalkingHeadTrainer(data, tiny_config(iters=3), str(tmp_path))
    trainer.fit(progress=False)
    ckpt_dir = tmp_path / "checkpoints"
    before = sorted(os.listdir(ckpt_dir))

    def boom(obj, path, *args, **kwargs):  # killed half-way through writing the temporary
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    trainer.progress.step = 6
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert sorted(os.listdir(ckpt_dir)) == before  # no partial file, tag unchanged
    assert trainer.checkpointer.get_checkpoint_file().endswith("model_0000003.pth")


def test_resume_rejects_other_audio_width(tiny_root, tmp_path):
    data = TalkingHeadDataset(tiny_root, "train")
    TalkingHeadTrainer(data, tiny_config(iters=3), str(tmp_path)).fit(progress=False)
    other = TalkingHeadDataset(tiny_root, "train", audio=data.audio_features[..., :29].contiguous())
    with pytest.raises(ValueError, match="audio_width=29"):
        TalkingHeadTrainer(other, tiny_config(iters=3), str(tmp_path)).fit(progress=False, resume=True)


def test_training_reduces_loss(tiny_root, tmp_path):
    data = TalkingHeadDataset(tiny_root, "train")
    config = tiny_config(iters=40, rays_per_camera=256, occupancy_warmup=16, occupancy_update_every=8,
                         lr=2e-2, lr_net=5e-3)
    trainer = TalkingHeadTrainer(data, config, str(tmp_path))
    image = lambda: trainer.head.render(data, 0)
    before = psnr(image(), data.image(0))
    trainer.fit(progress=False)
    after = psnr(image(), data.image(0))
    assert after > before + 3.0, (before, after)


def test_openness_proxy_tracks_ground_truth(tmp_path):
    root = ensure_synthetic(SyntheticConfig(size=64, seconds=3.0), cache_dir=str(tmp_path), progress=False)
    data = TalkingHeadDataset(root, "train")
    measured = torch.tensor([mouth_openness_proxy(data.image(i), data.lips_rects[i]) for i in range(len(data))])
    exact = torch.from_numpy(ground_truth_openness(data))
    assert exact.std() > 0.1
    assert pearson(measured, exact) > 0.95
    shuffled = exact[torch.randperm(len(exact), generator=torch.Generator().manual_seed(0))]
    assert abs(pearson(measured, shuffled)) < 0.5


def test_cli_writes_every_output(tiny_root, tmp_path):
    from pt3d_radnerf.training.video import probe_streams

    wav = tmp_path / "speech.wav"
    t = np.arange(8000) / 16000.0
    write_wav(str(wav), 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.1))
    ws = tmp_path / "ws"
    cmd = [sys.executable, os.path.join(ROOT, "examples", "fit_talking_head.py"), "--data", tiny_root,
           "--iters", "2", "--workspace", str(ws), "--audio", str(wav), "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((ws / "metrics.json").read_text())
    for key in ("psnr", "ssim", "mouth_psnr", "lipsync_corr", "render_ms_per_frame"):
        assert np.isfinite(metrics[key]), key
    assert (ws / "loss_psnr.png").stat().st_size > 1000
    for name in ("val_render", "val_side_by_side", "new_audio"):
        streams = probe_streams(str(ws / f"{name}.mp4"))
        assert "Video" in streams and "Audio" in streams, (name, streams)
    assert os.path.isfile(os.path.join(ws, "checkpoints", "model_0000002.pth"))

    # A second run into the same workspace must not clobber it without --resume.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode != 0 and "--resume" in again.stderr
    # --render-only of the checkpoint reproduces the metrics.
    ckpt = os.path.join(ws, "checkpoints", "model_0000002.pth")
    ws2 = tmp_path / "ws2"
    render = subprocess.run(cmd[:4] + ["--workspace", str(ws2), "--render-only", ckpt, "--audio", str(wav),
                                       "--threads", "1"], capture_output=True, text=True, env=env)
    assert render.returncode == 0, render.stderr[-3000:]
    again_metrics = json.loads((ws2 / "metrics.json").read_text())
    assert again_metrics["psnr"] == pytest.approx(metrics["psnr"], abs=1e-6)


def test_new_audio_of_other_width_is_refused():
    from pt3d_radnerf.training import ModelSpec, check_audio_compatible

    spec = ModelSpec(audio_window=16, audio_width=80, num_frames=4)
    check_audio_compatible(spec, torch.zeros(5, 16, 80), "logmel audio")
    with pytest.raises(ValueError, match="16 x 29 .* 16 x 80"):
        check_audio_compatible(spec, torch.zeros(5, 16, 29), "deepspeech audio")
