"""The example CLI: flags generated from FitConfig, every bad input refused before training
(naming the argument or file), the default new audio fits the model, outputs of one run."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

from pt3d_radnerf.audio.io import write_wav
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic
from pt3d_radnerf.training import FitConfig, TalkingHeadTrainer

from .fit_helpers import cli_flags, load_cli, tiny_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ensure_synthetic(SyntheticConfig(size=32, seconds=2.0), cache_dir=str(tmp_path_factory.mktemp("cache")),
                            progress=False)


@pytest.fixture(scope="module")
def cli():
    return load_cli()


@pytest.fixture
def run(cli, capsys):
    """run(argv) -> (exit code, stderr) of the CLI's main, in-process (threads restored)."""
    threads = torch.get_num_threads()

    def call(argv):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    yield call
    torch.set_num_threads(threads)


def test_every_fit_config_field_is_a_flag(cli):
    args = cli.parse_args(["--rays-per-camera", "7", "--max-samples-per-ray", "none", "--checkpoint-every", "5"])
    assert args.config == FitConfig(rays_per_camera=7, max_samples_per_ray=None, checkpoint_every=5)
    assert cli.parse_args([]).config == FitConfig()
    for f in dataclasses.fields(FitConfig):  # a flag per field, reading its default back
        text = "none" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        given = cli.parse_args(["--" + f.name.replace("_", "-"), text])
        assert hasattr(given, f.name) and given.config == FitConfig(), f.name


def _tiny(root, ws, *extra):
    return ["--data", root, "--workspace", str(ws), "--threads", "1", *cli_flags(tiny_config(iters=2)), *extra]


@pytest.mark.parametrize("flags, message", [
    (["--iters", "0"], "iters must be > 0"),
    (["--iters", "-4"], "iters must be > 0"),
    (["--rays-per-camera", "many"], "--rays-per-camera: expected an int"),
    (["--lr-decay", "2"], "lr_decay must be in"),
    (["--grid-resolution", "48"], "power of two"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--audio-type", "mp3"], "--audio-type: invalid choice"),
    (["--eye-source", "eyes"], "--eye-source: invalid choice"),
])
def test_bad_flags_are_refused(run, root, tmp_path, flags, message):
    code, err = run(_tiny(root, tmp_path / "ws") + flags)
    assert code == 2 and message in err, err
    assert not (tmp_path / "ws").exists()


def _bad_input(tmp_path, kind):
    """(extra argv, message fragment) of a hostile input."""
    if kind == "workspace under a file":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        return ["--workspace", str(blocker / "ws")], f"--workspace {blocker / 'ws'} is not writable"
    if kind == "missing audio":
        return ["--audio", str(tmp_path / "nope.wav")], f"--audio file not found: {tmp_path / 'nope.wav'}"
    if kind == "audio not audio":
        path = tmp_path / "speech.wav"
        path.write_text("this is not a wav file")
        return ["--audio", str(path)], f"cannot read --audio {path}"
    if kind == "audio of another feature type":
        path = tmp_path / "aud_ds.npy"
        np.save(path, np.zeros((30, 16, 29), np.float32))
        return ["--audio", str(path)], "16 x 29 features, but the model is built for 16 x 80"
    if kind == "asr type for a wav":
        path = tmp_path / "speech.wav"
        write_wav(str(path), np.zeros(8000))
        return ["--audio", str(path), "--audio-type", "deepspeech"], "only logmel features"
    if kind == "missing data":
        return ["--data", str(tmp_path / "no_data")], "--data folder not found"
    if kind == "render-only text file":
        path = tmp_path / "model.pth"
        path.write_text("hello")
        return ["--render-only", str(path)], f"cannot read checkpoint {path}"
    if kind == "render-only missing":
        return ["--render-only", str(tmp_path / "gone.pth")], "checkpoint not found"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["workspace under a file", "missing audio", "audio not audio",
                                  "audio of another feature type", "asr type for a wav", "missing data",
                                  "render-only text file", "render-only missing"])
def test_bad_inputs_are_refused_before_training(run, root, tmp_path, kind):
    extra, message = _bad_input(tmp_path, kind)
    ws = tmp_path / "ws"
    code, err = run(_tiny(root, ws) + extra)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert not (ws / "checkpoints").exists()  # nothing trained


def test_resume_with_another_config_and_rerun_without_resume(run, root, tmp_path):
    ws = tmp_path / "ws"
    data = TalkingHeadDataset(root, "train")
    TalkingHeadTrainer(data, tiny_config(iters=2), str(ws)).fit(progress=False)
    code, err = run(_tiny(root, ws))
    assert code == 2 and "already holds a run: pass --resume" in err
    code, err = run(_tiny(root, ws, "--resume", "--iters", "5"))
    assert code == 2 and "--iters 2 (asked: 5)" in err, err
    assert not (ws / "metrics.json").exists()


def test_resume_continues_the_checkpoints_config_for_flags_not_given(run, root, tmp_path):
    """A checkpoint trained with another value than today's default (as one of a version with
    another default): --resume without that flag continues it; giving the flag is refused."""
    ws = tmp_path / "ws"
    data = TalkingHeadDataset(root, "train")
    assert FitConfig().distortion_weight != 0.0
    TalkingHeadTrainer(data, tiny_config(iters=2, distortion_weight=0.0), str(ws)).fit(progress=False)
    base = ["--data", root, "--workspace", str(ws), "--threads", "1", "--resume"]
    code, err = run([*base, "--distortion-weight", str(FitConfig().distortion_weight)])
    assert code == 2 and f"--distortion-weight 0.0 (asked: {FitConfig().distortion_weight})" in err, err
    code, err = run(base)
    assert code == 0, err
    assert json.loads((ws / "metrics.json").read_text())["frames"] > 0


def test_precomputed_features_default_new_audio_fits_the_model(run, root, tmp_path):
    """A folder with ESPnet-style esperanto features only: the default new audio is the held-out
    split's own features (a 16 x 80 log-mel clip would not fit the 16 x 44 model)."""
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    n = TalkingHeadDataset(root, "val").aud_ids[-1] + 1
    np.save(copy / "aud_eo.npy", np.random.default_rng(0).standard_normal((n, 16, 44)).astype(np.float32))
    ws = tmp_path / "ws"
    code, err = run(["--data", str(copy), "--workspace", str(ws), "--threads", "1",
                     *cli_flags(tiny_config(iters=2)), "--audio-features", "esperanto"])
    assert code == 0, err
    metrics = json.loads((ws / "metrics.json").read_text())
    assert metrics["new_audio_source"] == "the held-out split's own audio features"
    assert (ws / "new_audio.mp4").stat().st_size > 0


def test_new_evaluation_replaces_every_previous_output(run, root, tmp_path, monkeypatch, cli):
    ws = tmp_path / "ws"
    code, err = run(_tiny(root, ws))
    assert code == 0, err
    assert (ws / "metrics.json").exists() and (ws / "new_audio.mp4").exists()
    # A re-render that fails half-way leaves no metrics.json next to a mix of old and new videos.
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("disk full")

    monkeypatch.setattr("pt3d_radnerf.training.evaluate.render_with_audio", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(_tiny(root, ws, "--resume"))
    assert calls
    assert not (ws / "metrics.json").exists() and not (ws / "new_audio.mp4").exists()
    assert sorted(p.name for p in ws.iterdir()) == ["checkpoints", "new_speech.wav", "val_render.mp4",
                                                    "val_side_by_side.mp4"]
