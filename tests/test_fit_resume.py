"""Determinism and lost work: 2-thread reproducibility, checkpoint fallback, config changes on
resume, stale temporaries, save-before-validate, the RNG left alone, checkpoint reading errors."""

import dataclasses
import inspect
import os
import warnings

import pytest
import torch

from pt3d_radnerf.atomic import TEMP_PREFIX
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic
from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.training import (CheckpointReadError, FitConfig, HeadModel, ModelSpec, TalkingHeadTrainer,
                                   read_checkpoint)

from .fit_helpers import differing, tiny_config, training_state


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = ensure_synthetic(SyntheticConfig(size=32, seconds=2.0), cache_dir=str(tmp_path_factory.mktemp("cache")),
                            progress=False)
    return TalkingHeadDataset(root, "train")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 2-thread run of tiny_config() (8 steps, checkpoints at 3, 6, 8)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    trainer = TalkingHeadTrainer(data, tiny_config(), str(tmp_path_factory.mktemp("reference")))
    trainer.fit(progress=False)
    torch.set_num_threads(before)
    return training_state(trainer)


def test_two_fresh_runs_are_equal_at_two_threads(data, reference, tmp_path, two_threads):
    again = TalkingHeadTrainer(data, tiny_config(), str(tmp_path))
    again.fit(progress=False)
    assert not differing(reference, training_state(again))


def test_fit_leaves_the_global_rng_alone(data, tmp_path):
    torch.manual_seed(77)
    state = torch.get_rng_state()
    trainer = TalkingHeadTrainer(data, tiny_config(iters=2), str(tmp_path))
    trainer.fit(progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(data, reference, tmp_path, two_threads):
    ws = str(tmp_path)
    TalkingHeadTrainer(data, tiny_config(), ws).fit(progress=False, stop_at=7)  # checkpoints 3 and 6
    ckpt = os.path.join(ws, "checkpoints")
    assert sorted(os.listdir(ckpt)) == ["last_checkpoint", "model_0000003.pth", "model_0000006.pth"]
    _truncate(os.path.join(ckpt, "model_0000006.pth"))  # e.g. disk full / copied while written
    resumed = TalkingHeadTrainer(data, tiny_config(), ws)
    with pytest.warns(UserWarning, match="model_0000006.pth") as record:
        resumed.fit(progress=False, resume=True)
    assert any("OLDER CHECKPOINT" in str(w.message) and "model_0000003.pth" in str(w.message) for w in record)
    assert resumed.progress.step == 8
    assert not differing(reference, training_state(resumed))  # steps 4-8 redone exactly


@pytest.mark.parametrize("tag", ["", "model_0000099.pth", "../elsewhere.pth", b"\xff\xfe"], ids=repr)
def test_broken_last_checkpoint_tag_falls_back(data, tmp_path, tag):
    ws = str(tmp_path)
    TalkingHeadTrainer(data, tiny_config(iters=3), ws).fit(progress=False)
    with open(os.path.join(ws, "checkpoints", "last_checkpoint"), "wb") as f:
        f.write(tag if isinstance(tag, bytes) else tag.encode())
    resumed = TalkingHeadTrainer(data, tiny_config(iters=3), ws)
    with pytest.warns(UserWarning, match="last_checkpoint"):
        assert resumed.resume().endswith("model_0000003.pth")
    assert resumed.progress.step == 3


def test_no_readable_checkpoint_is_a_clear_error(data, tmp_path):
    ws = str(tmp_path)
    TalkingHeadTrainer(data, tiny_config(iters=3), ws).fit(progress=False)
    ckpt = os.path.join(ws, "checkpoints")
    for name in os.listdir(ckpt):
        if name.endswith(".pth"):
            _truncate(os.path.join(ckpt, name))
    trainer = TalkingHeadTrainer(data, tiny_config(iters=3), ws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointReadError, match="(?s)no readable checkpoint.*model_0000003.pth"):
            trainer.fit(progress=False, resume=True)


def test_resume_refuses_a_changed_training_config(data, tmp_path):
    ws = str(tmp_path)
    TalkingHeadTrainer(data, tiny_config(iters=3), ws).fit(progress=False)
    trainer = TalkingHeadTrainer(data, tiny_config(iters=6, lr=1e-3), ws)
    with pytest.raises(ValueError, match=r"--iters 3 \(asked: 6\).*--lr 0.005 \(asked: 0.001\)"):
        trainer.fit(progress=False, resume=True)
    assert trainer.progress.step == 0  # nothing was loaded


def test_resume_records_a_changed_checkpoint_interval(data, tmp_path):
    ws = str(tmp_path)
    TalkingHeadTrainer(data, tiny_config(iters=6), ws).fit(progress=False, stop_at=3)
    trainer = TalkingHeadTrainer(data, tiny_config(iters=6, checkpoint_every=2), ws)
    trainer.fit(progress=False, resume=True)
    notes = [h for h in trainer.progress.history if "config_change" in h]
    assert notes == [{"step": 3, "config_change": {"checkpoint_every": {"was": 3, "now": 2}}}]
    assert "model_0000004.pth" in os.listdir(os.path.join(ws, "checkpoints"))


def test_stale_temporaries_are_removed_on_start(data, tmp_path):
    ws = tmp_path / "ws"
    (ws / "checkpoints").mkdir(parents=True)
    stale = [ws / f"{TEMP_PREFIX}abc.mp4", ws / "checkpoints" / f"{TEMP_PREFIX}x.pth"]
    for path in stale:
        path.write_bytes(b"half a file")
    (ws / "checkpoints" / f"{TEMP_PREFIX}dir").mkdir()
    keep = ws / "notes.txt"
    keep.write_text("mine")
    TalkingHeadTrainer(data, tiny_config(iters=1), str(ws))
    assert sorted(os.listdir(ws)) == ["checkpoints", "notes.txt"]
    assert os.listdir(ws / "checkpoints") == []


def test_checkpoint_is_saved_before_validation(data, tmp_path, monkeypatch):
    ws = str(tmp_path)
    trainer = TalkingHeadTrainer(data, tiny_config(iters=4, checkpoint_every=2, validate_every=2), ws,
                                 val_set=data)

    def broken(count):
        raise RuntimeError("validation image unreadable")

    monkeypatch.setattr(trainer, "validate", broken)
    with pytest.raises(RuntimeError, match="unreadable"):
        trainer.fit(progress=False)
    assert trainer.checkpointer.get_checkpoint_file().endswith("model_0000002.pth")


def test_default_checkpoint_interval_covers_short_runs():
    assert FitConfig(iters=60).checkpoint_interval == 6
    assert FitConfig(iters=5).checkpoint_interval == 1
    assert FitConfig(iters=100000).checkpoint_interval == 250
    assert FitConfig(iters=60, checkpoint_every=7).checkpoint_interval == 7


@pytest.mark.parametrize("overrides, match", [
    (dict(iters=0), "iters must be > 0"), (dict(iters=-3), "iters must be > 0"),
    (dict(rays_per_camera=0), "rays_per_camera"), (dict(lr_decay=0.0), "lr_decay"),
    (dict(grid_resolution=48), "power of two"), (dict(checkpoint_every=0), "checkpoint_every"),
    (dict(lr=float("nan")), "lr must be a finite number"), (dict(iters=2.5), "iters must be an int"),
])
def test_fit_config_refuses_bad_values(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FitConfig(**overrides)


def test_render_only_loads_a_checkpoint_without_training_state(data, tmp_path):
    ws = str(tmp_path)
    trainer = TalkingHeadTrainer(data, tiny_config(iters=3), ws)
    trainer.fit(progress=False)
    head = HeadModel.from_checkpoint(os.path.join(ws, "checkpoints", "model_0000003.pth"))
    assert head.steps == 3 and head.spec == trainer.spec and head.config == trainer.config
    assert torch.equal(head.render(data, 1), trainer.head.render(data, 1))


class _NotTensors:
    pass


@pytest.mark.parametrize("kind", ["truncated", "text", "pickled object", "state dict without model"])
def test_unreadable_checkpoint_names_the_file(data, tmp_path, kind):
    path = str(tmp_path / "model.pth")
    if kind == "truncated":
        TalkingHeadTrainer(data, tiny_config(iters=1), str(tmp_path / "ws")).fit(progress=False)
        with open(os.path.join(tmp_path, "ws", "checkpoints", "model_0000001.pth"), "rb") as f:
            blob = f.read()
        with open(path, "wb") as f:
            f.write(blob[: len(blob) // 3])
    elif kind == "text":
        with open(path, "w") as f:
            f.write("not a checkpoint\n")
    elif kind == "pickled object":
        torch.save({"model": _NotTensors()}, path)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointReadError) as err:
        HeadModel.from_checkpoint(path)
    assert path in str(err.value)
    assert "weights_only=False" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(str(tmp_path / "missing.pth"))


def test_model_spec_covers_every_field_constructor_argument():
    params = set(inspect.signature(AudioRadianceField.__init__).parameters) - {"self", "audio_type"}
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    assert params == names - {"audio_window", "audio_width"}
    spec = ModelSpec(audio_window=8, audio_width=12, num_frames=5, dim_aud=16, ind_dim=3, hidden=32,
                     geo_feat_dim=15, default_eye=0.5, log2_hashmap_size=10, use_attention=False)
    field = spec.build()
    assert (field.audio_window, field.audio_width, field.num_frames) == (8, 12, 5)
    assert field.individual_codes.shape == (5, 3) and field.dim_aud == 16 and field.default_eye == 0.5
    assert field.audio_att_net is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.hidden = 64
    with pytest.raises(ValueError, match="unknown fields.*grid_resolution"):
        ModelSpec.from_dict({**spec.to_dict(), "grid_resolution": 64})
