"""Scale-out on torch.distributed (CPU, gloo, 2 processes spawned here): the data-parallel fit
(head and torso) equals the single-process fit of the same global batch, also across a resume;
rank 1 never writes into the workspace (trainers, render and fit CLIs); a resume with another
world size is refused; the distributed render of 2 clips equals the single-process render frame
for frame, and a re-run skips finished clips.

Everything distributed runs in ONE spawn of 2 processes (:func:`_worker`), which reports
through files outside the workspaces; the single-process references run in this process.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import SyntheticConfig, ensure_synthetic
from pt3d_radnerf.renderer import OccupancyGridRaysampler
from pt3d_radnerf.training import HeadModel, ModelSpec, TalkingHeadTrainer, TorsoTrainer, read_checkpoint
from pt3d_radnerf.training.distributed import free_port, share, slice_cameras

from .fit_helpers import ROOT, cli_flags, load_cli, tiny_config

WORLD = 2
STEPS = 5
RENDER = os.path.join(ROOT, "examples", "render_talking_head.py")


def _config():
    # 4 cameras: 2 per process; checkpoints at 3 and 5; grid updates at steps 0, 2, 4. Random
    # backgrounds (the synthetic folder has parsing/): their colours must not depend on the split.
    return tiny_config(iters=STEPS, cameras_per_step=4, rays_per_camera=48, checkpoint_every=3,
                       random_background=True)


def _load_render_cli():
    spec = importlib.util.spec_from_file_location("render_talking_head", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recording(trainer, losses):
    """Wraps ``trainer.train_step`` to record every step's (global-batch) loss."""
    step_fn = trainer.train_step

    def train_step(step):
        stats = step_fn(step)
        losses.append(stats["loss"])
        return stats

    trainer.train_step = train_step


def _writes_under(folder: str, log: list):
    """An audit hook that records every write-like operation on a path under ``folder``."""
    folder = os.path.realpath(folder)
    writing = {"os.rename", "os.replace", "os.remove", "os.unlink", "os.mkdir", "os.rmdir", "os.truncate",
               "shutil.rmtree", "shutil.move", "shutil.copyfile"}

    def hook(event, args):
        paths = []
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = (args[1] if len(args) > 1 else "r") or "r", args[2] if len(args) > 2 else 0
            if any(c in str(mode) for c in "wax+") or (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)):
                paths.append(args[0])
        elif event in writing:
            paths.extend(a for a in args if isinstance(a, (str, bytes, os.PathLike)))
        elif event == "subprocess.Popen":
            paths.append("subprocess: " + " ".join(map(str, args[1] or [])))
        for p in paths:
            text = os.fsdecode(p) if not isinstance(p, str) else p
            if text.startswith("subprocess: ") or os.path.realpath(text).startswith(folder):
                log.append((event, text))

    sys.addaudithook(hook)


def _torso_trainer(torso_root: str, workspace: str) -> TorsoTrainer:
    """A torso stage behind a (seeded, untrained) head on the torso folder."""
    data = TalkingHeadDataset(torso_root)
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), _config())
    return TorsoTrainer(data, head, _config(), workspace)


def _worker(rank: int, port: int, root: str, tmp: str, ckpt: str, clips: list, torso_root: str) -> None:
    from pt3d_radnerf.training import distributed

    distributed.join_local(rank, WORLD, port)
    torch.set_num_threads(1)
    writes: list = []
    if rank != 0:  # rank 1 must not write into either workspace (nor start an encoder)
        _writes_under(os.path.join(tmp, "ws"), writes)
    data = TalkingHeadDataset(root, "train")
    losses: list = []
    first = TalkingHeadTrainer(data, _config(), os.path.join(tmp, "ws", "fit"))
    _recording(first, losses)
    first.fit(progress=False, stop_at=3)  # checkpoint 3 ...
    trainer = TalkingHeadTrainer(data, _config(), os.path.join(tmp, "ws", "fit"))
    _recording(trainer, losses)
    trainer.fit(progress=False, resume=True)  # ... resumed by both ranks from rank 0's checkpoint
    result = {"losses": losses, "grid": {k: v.clone() for k, v in trainer.grid.state_dict().items()},
              "field": {k: v.detach().clone() for k, v in trainer.field.state_dict().items()}}
    torso = _torso_trainer(torso_root, os.path.join(tmp, "ws", "torso"))
    result["torso_losses"] = []
    _recording(torso, result["torso_losses"])
    torso.fit(progress=False)
    result["torso"] = {k: v.detach().clone() for k, v in torso.torso.state_dict().items()}
    render_cli = _load_render_cli()
    out = os.path.join(tmp, "ws", "render")
    argv = ["--ckpt", ckpt, "--data", root, "--audio", *clips, "--out", out, "--threads", "1", "--no-progress",
            "--audio-type", "logmel"]
    result["render"] = render_cli.main(argv)
    videos = sorted(os.listdir(out)) if rank == 0 else []
    stamps = [os.stat(os.path.join(out, v)).st_mtime_ns for v in videos]
    result["render_again"] = render_cli.main(argv)  # both clips complete: skipped
    result["rewritten"] = [v for v, t in zip(videos, stamps) if os.stat(os.path.join(out, v)).st_mtime_ns != t]
    # the fit CLI end to end (rank 0 evaluates and writes the videos and metrics)
    result["cli"] = load_cli().main(["--data", root, "--workspace", os.path.join(tmp, "ws", "cli"), "--threads", "1",
                                     "--audio", clips[1], "--audio-type", "logmel",
                                     *cli_flags(tiny_config(iters=2, cameras_per_step=2))])
    result["writes"] = writes
    distributed.barrier()
    torch.save(result, os.path.join(tmp, f"rank{rank}.pt"))
    distributed.shutdown()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ensure_synthetic(SyntheticConfig(size=32, seconds=2.0), cache_dir=str(tmp_path_factory.mktemp("cache")),
                            progress=False)


@pytest.fixture(scope="module")
def single(root, tmp_path_factory):
    """The single-process fit (2 threads): per-step losses, the trainer, its workspace."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    ws = str(tmp_path_factory.mktemp("single"))
    trainer = TalkingHeadTrainer(TalkingHeadDataset(root, "train"), _config(), ws)
    losses: list = []
    _recording(trainer, losses)
    trainer.fit(progress=False)
    torch.set_num_threads(before)
    return losses, trainer, ws


@pytest.fixture(scope="module")
def torso_root(tmp_path_factory):
    from .test_torso_stage import write_smooth_torso_folder

    path = str(tmp_path_factory.mktemp("torso_folder"))
    write_smooth_torso_folder(path)
    return path


@pytest.fixture(scope="module")
def clips(root, tmp_path_factory):
    """Two short clips of new audio: a wav (log-mel features, muxed in) and a feature .npy."""
    from pt3d_radnerf.training.evaluate import load_audio_features, synthetic_new_speech

    folder = tmp_path_factory.mktemp("clips")
    wav = synthetic_new_speech(str(folder / "speech_a.wav"), seconds=0.4, seed=5)
    other = synthetic_new_speech(str(folder / "other.wav"), seconds=0.32, seed=6)
    npy = str(folder / "speech_b.npy")
    np.save(npy, load_audio_features(other).numpy())
    return [wav, npy]


@pytest.fixture(scope="module")
def spawned(root, single, clips, torso_root, tmp_path_factory):
    """Runs :func:`_worker` on 2 processes; returns (tmp folder, rank 0's and rank 1's results)."""
    tmp = str(tmp_path_factory.mktemp("dist"))
    ckpt = os.path.join(single[2], "checkpoints", f"model_{STEPS:07d}.pth")
    mp.spawn(_worker, args=(free_port(), root, tmp, ckpt, clips, torso_root), nprocs=WORLD, join=True)
    return tmp, [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


def test_share_splits_cameras_contiguously_and_refuses_uneven_batches():
    assert [share(6, 3, r) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    with pytest.raises(ValueError, match=r"cameras_per_step \(--cameras-per-step\) 5 .* \(2\)"):
        share(5, 2, 0)


def test_slice_cameras_equals_marching_the_cameras_alone(root):
    """A share of a marched bundle holds exactly the samples of its cameras' rays, re-indexed as
    if they had been marched alone (deterministic march: no jitter)."""
    data = TalkingHeadDataset(root, "train")
    trainer = TalkingHeadTrainer(data, _config(), "/nonexistent-never-written")
    trainer.grid.mark_unseen(data.cameras(torch.arange(2), "cpu"), (data.height, data.width))
    sampler: OccupancyGridRaysampler = trainer.head.raysampler(data.height, data.width)
    cams = data.cameras(torch.tensor([0, 3, 5, 7]), "cpu")
    full = sampler(cams, stratified_sampling=False)
    alone = sampler(data.cameras(torch.tensor([5, 7]), "cpu"), stratified_sampling=False)
    part = slice_cameras(full, slice(2, 4))
    for name in ("origins", "directions", "xys", "ray_indices", "t_starts", "t_ends", "packed_info", "camera_ids"):
        assert torch.equal(getattr(part, name), getattr(alone, name)), name
    assert part.n_samples > 0


def test_data_parallel_fit_equals_single_process(single, spawned):
    """Steps 1-3, then a resume (same world size) for steps 4-5, against one uninterrupted process."""
    losses, trainer, _ = single
    _, results = spawned
    for r in results:
        assert len(r["losses"]) == STEPS
        np.testing.assert_allclose(r["losses"], losses, rtol=1e-4, atol=1e-6)
    # DDP keeps the ranks bit-identical (same all-reduced gradient, same Adam, same grid update)
    for key, value in results[0]["grid"].items():
        assert torch.equal(value, results[1]["grid"][key]), key
    for key, value in results[0]["field"].items():
        assert torch.equal(value, results[1]["field"][key]), key
    # ... and equal to the single-process run to float tolerance, up to Adam's amplification: a
    # table entry whose gradient is rounding noise (all-reduced halves vs one sum) moves by up to
    # lr per step in either direction (eps 1e-15), so a handful of the 2.9 M grid entries may
    # differ by that bound (1 of them with the distortion loss on).
    config = _config()
    for key, value in trainer.field.state_dict().items():
        got = results[0]["field"][key]
        off = ~torch.isclose(got, value, rtol=1e-3, atol=2e-4)
        assert int(off.sum()) <= value.numel() // 100_000, (key, int(off.sum()))
        assert float((got - value).abs().max()) <= 2 * config.lr * STEPS, key
    for key, value in trainer.grid.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(results[0]["grid"][key], value, rtol=1e-3, atol=1e-3, msg=key)
        else:
            assert torch.equal(results[0]["grid"][key], value), key


def test_data_parallel_torso_stage_equals_single_process(torso_root, spawned, tmp_path):
    _, results = spawned
    trainer = _torso_trainer(torso_root, str(tmp_path))
    losses: list = []
    _recording(trainer, losses)
    trainer.fit(progress=False)
    for r in results:
        np.testing.assert_allclose(r["torso_losses"], losses, rtol=1e-4, atol=1e-6)
    for key, value in trainer.torso.state_dict().items():
        assert torch.equal(results[0]["torso"][key], results[1]["torso"][key]), key
        torch.testing.assert_close(results[0]["torso"][key], value, rtol=1e-3, atol=2e-4, msg=key)


def test_only_rank_0_writes(single, spawned):
    tmp, results = spawned
    assert results[1]["writes"] == []
    assert results[0]["render"] == results[1]["render"] == 0
    assert results[0]["render_again"] == results[1]["render_again"] == 0
    # rank 0 wrote the same checkpoint files as a single process
    ours = sorted(os.listdir(os.path.join(tmp, "ws", "fit", "checkpoints")))
    assert ours == sorted(os.listdir(os.path.join(single[2], "checkpoints")))
    assert sorted(os.listdir(os.path.join(tmp, "ws"))) == ["cli", "fit", "render", "torso"]
    assert results[0]["cli"] == results[1]["cli"] == 0
    with open(os.path.join(tmp, "ws", "cli", "metrics.json")) as f:
        assert json.load(f)["world_size"] == WORLD


def test_resume_with_another_world_size_is_refused(root, spawned):
    tmp, _ = spawned
    ws = os.path.join(tmp, "ws", "fit")
    data = read_checkpoint(os.path.join(ws, "checkpoints", f"model_{STEPS:07d}.pth"))
    assert data["world_size"] == WORLD
    trainer = TalkingHeadTrainer(TalkingHeadDataset(root, "train"), _config(), ws)
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\), this run has 1"):
        trainer.fit(progress=False, resume=True)


def _decode(path: str) -> np.ndarray:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="ffmpeg") as reader:
        return np.stack([frame for frame in reader])


def test_distributed_render_equals_single_process_and_skips_finished_clips(root, single, clips, spawned, tmp_path):
    tmp, results = spawned
    ckpt = os.path.join(single[2], "checkpoints", f"model_{STEPS:07d}.pth")
    before = torch.get_num_threads()
    try:
        code = _load_render_cli().main(["--ckpt", ckpt, "--data", root, "--audio", *clips, "--out", str(tmp_path),
                                        "--audio-type", "logmel", "--threads", "1", "--no-progress"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    names = ["speech_a.mp4", "speech_b.mp4"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(os.path.join(tmp, "ws", "render"))) == names
    for name, seconds in zip(names, (0.4, 0.32)):
        ours, reference = _decode(os.path.join(tmp, "ws", "render", name)), _decode(str(tmp_path / name))
        assert ours.shape[0] == round(seconds * 25) and ours.shape == reference.shape
        assert np.array_equal(ours, reference), name
        assert ours.std() > 0  # not a blank video
    assert results[0]["rewritten"] == []  # the re-run skipped both finished clips
