"""kill -9 of the example CLI during training, then --resume: the final checkpoint is
bit-identical to an uninterrupted run (2 threads), and what the killed run left behind is cleaned up."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pt3d_radnerf.atomic import TEMP_PREFIX
from pt3d_radnerf.audio.io import write_wav
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic
from pt3d_radnerf.training import TalkingHeadTrainer, read_checkpoint

from .fit_helpers import CLI, ROOT, cli_flags, differing, tiny_config, training_state

ITERS = 12


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ensure_synthetic(SyntheticConfig(size=32, seconds=2.0), cache_dir=str(tmp_path_factory.mktemp("cache")),
                            progress=False)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """0.4 s of new audio (10 frames: the evaluation is not what is tested here)."""
    path = str(tmp_path_factory.mktemp("audio") / "speech.wav")
    t = np.arange(6400) / 16000.0
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t))
    return path


CONFIG = tiny_config(iters=ITERS, checkpoint_every=3)


def _command(root, speech, workspace, *extra):
    return [sys.executable, CLI, "--data", root, "--workspace", workspace, "--threads", "2", "--audio", speech,
            *cli_flags(CONFIG), *extra]


def _env():
    return dict(os.environ, PYTHONPATH=ROOT)


def kill_after_checkpoint(command, workspace: str, prefix: str, iters: int) -> None:
    """Starts ``command``, SIGKILLs it as soon as its step-3 checkpoint ``<prefix>_0000003.pth``
    exists (mid-training: fewer than ``iters`` steps saved, no metrics.json), and leaves what a
    kill during a write leaves: a temporary beside the checkpoints."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    first = os.path.join(workspace, "checkpoints", f"{prefix}_0000003.pth")
    deadline = time.time() + 300
    while not os.path.exists(first) and child.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert child.poll() is None, "the run ended before it could be killed: " + child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    steps = [int(f[len(prefix) + 1 : len(prefix) + 8]) for f in os.listdir(os.path.join(workspace, "checkpoints"))
             if f.startswith(prefix + "_")]
    assert steps and max(steps) < iters, steps  # killed mid-training
    assert not os.path.exists(os.path.join(workspace, "metrics.json"))
    with open(os.path.join(workspace, "checkpoints", TEMP_PREFIX + "killed.pth"), "wb") as f:
        f.write(b"\0" * 1000)


def test_kill_during_training_then_resume_is_bit_exact(root, speech, tmp_path):
    cut_ws = str(tmp_path / "cut")
    kill_after_checkpoint(_command(root, speech, cut_ws), cut_ws, "model", ITERS)

    again = subprocess.run(_command(root, speech, cut_ws, "--resume"), capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    # The reference: the same run, never interrupted, in this process at the same thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        TalkingHeadTrainer(TalkingHeadDataset(root, "train"), CONFIG, str(tmp_path / "full")).fit(progress=False)
    finally:
        torch.set_num_threads(threads)
    name = f"model_{ITERS:07d}.pth"
    a = training_state(read_checkpoint(os.path.join(tmp_path, "full", "checkpoints", name)))
    b = training_state(read_checkpoint(os.path.join(cut_ws, "checkpoints", name)))
    assert any(k.startswith("rng.") for k in a) and len(a) > 100
    assert not differing(a, b)
    assert not [f for f in os.listdir(os.path.join(cut_ws, "checkpoints")) if f.startswith(TEMP_PREFIX)]
    assert os.path.isfile(os.path.join(cut_ws, "metrics.json"))
