"""RAD-NeRF's torso stage: a TorsoField trained behind the frozen head, full-frame evaluation
(head over torso over bc.jpg) next to the head-only numbers, stage-aware resume and CLI, the
trainer's next-step prefetch and the streaming evaluation."""

import gc
import json
import os
import weakref

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.models import TorsoField
from pt3d_radnerf.training import (FitConfig, HeadModel, HeadTorsoModel, ModelSpec, TalkingHeadTrainer,
                                   TorsoTrainer, read_checkpoint)
from pt3d_radnerf.training.evaluate import evaluate, render_with_audio
from pt3d_radnerf.training.step import draw_frames
from tests.fit_helpers import cli_flags, differing, load_cli, tiny_config
from tests.test_talking_head_data import H, W, make_folder

TORSO_CONFIG = tiny_config(iters=60, rays_per_camera=256, lr=2e-2, lr_net=5e-3, checkpoint_every=20)


def write_smooth_torso_folder(root, n=6):
    """make_folder with a textured bc.jpg, a smooth RGBA torso (shoulders whose top edge moves
    with the frame) and ground-truth frames = torso over bc.jpg (no head: an empty head fits)."""
    make_folder(root, n=n)
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    bc = np.stack([0.2 + 0.6 * rows / H, 0.8 - 0.5 * cols / W, 0.5 + 0.3 * np.sin(cols / 5)], -1)
    imageio.imwrite(os.path.join(root, "bc.jpg"), (bc * 255).round().astype(np.uint8))
    os.makedirs(os.path.join(root, "torso_imgs"))
    for i in range(n):
        top = H * 0.5 + 3 * (i % 3)  # the shoulders' edge follows the pose (POSES[i % 3])
        alpha = np.clip(rows - top, 0.0, 1.0)[..., None]
        colour = np.stack([0.9 - 0.3 * rows / H, 0.3 + 0.4 * cols / W, np.full_like(rows, 0.25)], -1)
        rgba = np.concatenate([colour, alpha], -1)
        imageio.imwrite(os.path.join(root, "torso_imgs", f"{i}.png"), (rgba * 255).round().astype(np.uint8))
        frame = colour * alpha + bc * (1 - alpha)
        imageio.imwrite(os.path.join(root, "gt_imgs", f"{i}.jpg"), (frame * 255).round().astype(np.uint8))


def empty_head(data) -> HeadModel:
    """A head that covers nothing (empty occupancy grid)."""
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), tiny_config())
    head.grid.set_occupancy(torch.zeros(1, 16**3, dtype=torch.bool))
    return head


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("torso_folder"))
    write_smooth_torso_folder(path)
    return path


def torso_state(trainer: TorsoTrainer) -> dict:
    out = {f"torso.{k}": v for k, v in trainer.torso.state_dict().items()}
    for k, v in trainer.optimizer.state_dict()["state"].items():
        out.update({f"adam.{k}.{name}": t for name, t in v.items()})
    out.update({f"head.{k}": v for k, v in trainer.head.field.state_dict().items()})
    return out


def test_torso_stage_learns_the_torso_and_beats_the_head_alone(root, tmp_path):
    data = TalkingHeadDataset(root)
    head = empty_head(data)
    head_before = {k: v.clone() for k, v in head.field.state_dict().items()}
    trainer = TorsoTrainer(data, head, TORSO_CONFIG, str(tmp_path))
    history = trainer.fit(progress=False)
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    assert not differing(head_before, head.field.state_dict())  # the head is frozen

    metrics = evaluate(trainer.model, TalkingHeadDataset(root, "val"), progress=False)
    # Full frame: the learned torso over bc.jpg explains the torso pixels, bc.jpg alone does not.
    assert metrics["psnr"] > metrics["psnr_head_on_bc"] + 3.0
    # Head-only (over the ground-truth torso): the frames are exactly that, up to JPEG noise.
    assert metrics["psnr_head"] > metrics["psnr"] and metrics["psnr_head"] > 30.0
    for key in ("ssim", "mouth_psnr", "lipsync_corr", "ssim_head", "mouth_psnr_head", "lipsync_corr_head"):
        assert key in metrics
    assert metrics["frame_render"] == "head over the rendered torso over bc.jpg"


def test_full_frame_is_head_over_torso_over_background(root):
    data = TalkingHeadDataset(root, "val")
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), tiny_config())  # untrained: visible
    model = HeadTorsoModel(head, TorsoField(num_frames=6))
    views = model.views(data, 2)
    rgb, opacity = head.layers(data, 2)
    assert float(opacity.max()) > 0.05  # the composite is not trivially the background
    alpha, colour = model.torso(model.coords(H, W), data.torso_poses[2:3], None)
    torso = colour[0].view(H, W, 3) * alpha[0].view(H, W, 1) + data.background * (1 - alpha[0].view(H, W, 1))
    torch.testing.assert_close(views["frame"], (rgb + (1 - opacity) * torso).clamp(0, 1))
    torch.testing.assert_close(views["head"], head.render(data, 2))
    torch.testing.assert_close(views["head_on_bc"], (rgb + (1 - opacity) * data.background).clamp(0, 1))
    torch.testing.assert_close(model.render(data, 2), views["frame"])


def test_resume_across_stages_is_bit_exact_at_two_threads(root, tmp_path, two_threads):
    data = TalkingHeadDataset(root)
    head_ws = str(tmp_path / "head")
    TalkingHeadTrainer(data, tiny_config(iters=2), head_ws).fit(progress=False)
    head_ckpt = os.path.join(head_ws, "checkpoints", "model_0000002.pth")
    config = tiny_config(iters=8, checkpoint_every=3)

    reference = TorsoTrainer(data, HeadModel.from_checkpoint(head_ckpt), config, str(tmp_path / "ref"))
    reference.fit(progress=False)

    cut_ws = str(tmp_path / "cut")
    TorsoTrainer(data, HeadModel.from_checkpoint(head_ckpt), config, cut_ws).fit(progress=False, stop_at=5)
    saved = os.path.join(cut_ws, "checkpoints", "torso_0000003.pth")
    assert read_checkpoint(saved)["stage"] == "torso"
    assert sorted(os.listdir(os.path.join(cut_ws, "checkpoints"))) == ["last_torso_checkpoint", "torso_0000003.pth"]
    # The resumed run gets its head from the torso checkpoint (as the CLI does), not from the head's.
    resumed = TorsoTrainer(data, HeadModel.from_state(read_checkpoint(saved)["head"], saved), config, cut_ws)
    resumed.fit(resume=True, progress=False)
    assert resumed.progress.step == 8
    assert not differing(torso_state(reference), torso_state(resumed))

    # Stages are not mixed up: each loader names the other stage.
    saved = os.path.join(cut_ws, "checkpoints", "torso_0000008.pth")
    with pytest.raises(ValueError, match="torso-stage checkpoint, not a head checkpoint"):
        HeadModel.from_checkpoint(saved)
    with pytest.raises(ValueError, match="head checkpoint, not a torso-stage checkpoint"):
        HeadTorsoModel.from_checkpoint(head_ckpt)
    # A head trainer never picks up torso files, and the torso trainer refuses another head.
    assert TalkingHeadTrainer(data, tiny_config(iters=8, checkpoint_every=3), cut_ws).resume() is None
    other = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), tiny_config(iters=3))
    with pytest.raises(ValueError, match="behind another head"):
        TorsoTrainer(data, other, config, cut_ws).resume()


def test_trainer_prefetches_the_next_steps_frames(root, tmp_path):
    data = TalkingHeadDataset(root)
    asked = []
    data.prefetch = lambda indices: asked.append(torch.as_tensor(indices).clone())
    config = tiny_config(iters=3)
    TorsoTrainer(data, empty_head(data), config, str(tmp_path)).fit(progress=False)
    assert len(asked) == 3
    for step, indices in enumerate(asked):
        assert torch.equal(indices, draw_frames(config, step + 1, len(data)))
    # The draws depend on (seed, step) only.
    assert torch.equal(draw_frames(config, 5, 6), draw_frames(config, 5, 6))
    assert not all(torch.equal(draw_frames(config, s, 6), draw_frames(config, 0, 6)) for s in range(1, 6))


def test_evaluation_keeps_no_frames(root):
    data = TalkingHeadDataset(root, "val")
    head = empty_head(data)
    model = HeadTorsoModel(head, TorsoField(num_frames=6))
    previous, seen = [], []

    def sink(index, views, target):
        gc.collect()
        assert all(ref() is None for ref in previous), "evaluate keeps an earlier frame's tensors"
        previous[:] = [weakref.ref(t) for t in (target, *views.values())]
        seen.append(index)

    metrics = evaluate(model, data, progress=False, on_frame=sink)
    assert seen == list(range(len(data))) and metrics["frames"] == len(data)
    frames = render_with_audio(model, data, data.audio_features[:4], progress=False)
    assert not isinstance(frames, (list, tuple))  # rendered as the video writer asks for them
    assert [tuple(f.shape) for f in frames] == [(H, W, 3)] * 4


# ---- the command line ---------------------------------------------------------------------------
def _flags(root, ws, config, *extra):
    return ["--data", root, "--workspace", str(ws), "--threads", "2", *cli_flags(config), *extra]


def test_cli_torso_stage(root, tmp_path, capsys):
    cli = load_cli()
    ws = tmp_path / "ws"
    assert cli.main(_flags(root, ws, tiny_config(iters=2))) == 0
    head_metrics = json.loads((ws / "metrics.json").read_text())
    assert head_metrics["stage"] == "head" and "psnr_head" not in head_metrics
    config = tiny_config(iters=4, checkpoint_every=2)
    assert cli.main(_flags(root, ws, config, "--torso")) == 0
    metrics = json.loads((ws / "metrics.json").read_text())
    assert metrics["stage"] == "torso" and metrics["steps"] == 4
    for key in ("psnr", "ssim", "mouth_psnr", "lipsync_corr", "psnr_head", "ssim_head", "mouth_psnr_head",
                "lipsync_corr_head", "psnr_head_on_bc"):
        assert np.isfinite(metrics[key]), key
    for name in ("val_render.mp4", "val_side_by_side.mp4", "new_audio.mp4"):
        assert (ws / name).stat().st_size > 0
    assert sorted(p.name for p in (ws / "checkpoints").iterdir()) == [
        "last_checkpoint", "last_torso_checkpoint", "model_0000002.pth", "torso_0000002.pth", "torso_0000004.pth"]

    capsys.readouterr()
    assert cli.main(_flags(root, ws, config, "--torso")) == 2
    assert "already holds a torso-stage run: pass --resume" in capsys.readouterr().err
    # --resume continues the stage the workspace is in (the torso, finished here: evaluates again).
    assert cli.main(_flags(root, ws, config, "--resume")) == 0
    assert json.loads((ws / "metrics.json").read_text())["stage"] == "torso"
    ckpt = str(ws / "checkpoints" / "torso_0000004.pth")
    assert cli.main(_flags(root, tmp_path / "render", config, "--render-only", ckpt)) == 0
    again = json.loads((tmp_path / "render" / "metrics.json").read_text())
    assert again["stage"] == "torso" and again["psnr"] == metrics["psnr"]
    # A torso checkpoint is not a head.
    assert cli.main(_flags(root, tmp_path / "other", config, "--torso", "--head-ckpt", ckpt)) == 2
    assert "torso-stage checkpoint, not a head checkpoint" in capsys.readouterr().err


def test_cli_torso_is_refused_before_training(root, tmp_path, capsys):
    cli = load_cli()
    plain = str(tmp_path / "plain")
    make_folder(plain)  # no torso_imgs/
    ws = tmp_path / "ws"
    assert cli.main(_flags(plain, ws, tiny_config(iters=2), "--torso")) == 2
    assert "--torso needs RAD-NeRF's RGBA torso images" in capsys.readouterr().err
    assert not (ws / "checkpoints").exists() and not (ws / "metrics.json").exists()
    # A torso folder but no head to train behind.
    assert cli.main(_flags(root, ws, tiny_config(iters=2), "--torso")) == 2
    assert "holds no head checkpoint" in capsys.readouterr().err
    assert not (ws / "checkpoints").exists()


def test_video_writer_streams_and_leaves_nothing_on_error(tmp_path):
    from pt3d_radnerf.training.video import VideoWriter, probe_streams

    path = str(tmp_path / "ok.mp4")
    with VideoWriter(path, fps=25) as video:
        for k in range(3):
            video.append(torch.full((16, 16, 3), k / 3.0))
    assert video.frames == 3 and "Video" in probe_streams(path)
    with pytest.raises(RuntimeError, match="render failed"):
        with VideoWriter(str(tmp_path / "broken.mp4")) as video:
            video.append(torch.zeros(16, 16, 3))
            raise RuntimeError("render failed")
    assert sorted(os.listdir(tmp_path)) == ["ok.mp4"]  # no partial video, no temporaries
