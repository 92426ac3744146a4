"""kill -9 of the CLI's torso stage (``--torso --resume``, as ``make run`` calls it) after its
first checkpoint, then the same command again: the final torso checkpoint is bit-identical to an
uninterrupted torso run (2 threads), and the first call, on a workspace holding only the head,
starts the torso stage afresh."""

import os
import subprocess

import torch

from pt3d_radnerf.atomic import TEMP_PREFIX
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.training import HeadModel, TalkingHeadTrainer, TorsoTrainer, read_checkpoint

from .fit_helpers import _flatten, cli_flags, differing, tiny_config
from .test_interruption import CONFIG as HEAD_CONFIG
from .test_interruption import _command, _env, kill_after_checkpoint, root, speech  # noqa: F401 (fixtures)

ITERS = 15
TORSO_CONFIG = tiny_config(iters=ITERS, checkpoint_every=3, rays_per_camera=128)


def torso_checkpoint_state(path: str) -> dict:
    """Every torso, optimizer, RNG, progress and head tensor of a torso checkpoint (flattened),
    except the history's wall-clock times."""
    data = read_checkpoint(path)
    out = {}
    for key in ("model", "optimizer", "rng", "progress", "head"):
        _flatten(key, data[key], out)
    return {k: v for k, v in out.items() if not k.endswith(".time")}


def test_kill_torso_stage_then_resume_is_bit_exact(root, speech, tmp_path):
    ws = str(tmp_path / "cut")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        TalkingHeadTrainer(TalkingHeadDataset(root, "train"), HEAD_CONFIG, ws).fit(progress=False)
    finally:
        torch.set_num_threads(threads)
    head_ckpt = os.path.join(ws, "checkpoints", "model_0000012.pth")
    # _command's flags are the head's config; the torso stage's come after them and win.
    command = _command(root, speech, ws, "--torso", "--resume", *cli_flags(TORSO_CONFIG))

    kill_after_checkpoint(command, ws, "torso", ITERS)

    again = subprocess.run(command, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    # The reference: the same torso stage behind the same head, never interrupted, 2 threads.
    torch.set_num_threads(2)
    try:
        TorsoTrainer(TalkingHeadDataset(root, "train"), HeadModel.from_checkpoint(head_ckpt), TORSO_CONFIG,
                     str(tmp_path / "full")).fit(progress=False)
    finally:
        torch.set_num_threads(threads)
    name = f"torso_{ITERS:07d}.pth"
    a = torso_checkpoint_state(os.path.join(tmp_path, "full", "checkpoints", name))
    b = torso_checkpoint_state(os.path.join(ws, "checkpoints", name))
    assert any(k.startswith("rng.") for k in a) and any(k.startswith("optimizer.") for k in a) and len(a) > 30
    assert not differing(a, b)
    assert not [f for f in os.listdir(os.path.join(ws, "checkpoints")) if f.startswith(TEMP_PREFIX)]
    assert os.path.isfile(os.path.join(ws, "metrics.json"))
