"""The training loops: RAD-NeRF's two stages, the head (:class:`TalkingHeadTrainer`, an
:class:`~.inference.HeadModel`) and the torso with the head frozen (:class:`TorsoTrainer`), on one
resumable loop (:class:`StageTrainer`).

Per step (:mod:`.step` has the batch and the loss): the occupancy grid is updated (every
``occupancy_update_every`` steps, with a random training frame's audio and eye: RAD-NeRF's union
of occupancy over audio), the batch loss is back-propagated, and Adam (0.9, 0.99, eps 1e-15)
steps with grids at ``lr``, nets at ``lr_net`` (attention 5x), every learning rate decayed
exponentially to ``lr_decay`` x its start over the run.

Checkpoints hold the field, the grid, the optimizer, the RNG, the step/history, the model spec
and the config. :meth:`TalkingHeadTrainer.fit` runs inside a forked RNG (the caller's global RNG
is left as it was) whose state is checkpointed, so ``fit(resume=True)`` continues bit-for-bit at
a fixed thread count. A resume with a different training config is refused. Each step asks the
dataset to decode the next step's frames (:func:`~.step.draw_frames`) on its prefetch threads.

Under torchrun both stages train data-parallel (:mod:`.distributed`): every process draws and
marches the whole step, renders its share of the cameras, DDP averages the gradients; only rank
0 writes checkpoints (which record the world size: a resume with another one is refused),
validates and shows progress, and each process decodes only its own cameras' images.

The torso stage (RAD-NeRF's ``--torso``) trains a :class:`~pt3d_radnerf.models.TorsoField` on
uniformly drawn pixels: ``rgb * alpha + bc * (1 - alpha)`` against the ground-truth torso over
bc.jpg, plus ``entropy_weight`` x the entropy of alpha; the head is not rendered. Its checkpoints
(``torso_<step>.pth``) hold the torso, its optimizer/RNG/progress and the whole head, so they
resume and render on their own.
"""

import os
import time
from typing import Any, Dict, List, Optional

import torch
from pytorch3d.renderer import ImplicitRenderer
from tqdm import tqdm

from ..atomic import remove_stale_temporaries
from ..audio import attention_windows
from ..data import TalkingHeadDataset
from ..models import TorsoField
from .checkpoint import STAGE_PREFIXES, AtomicCheckpointer, RNGState
from .config import OPERATIONAL_FIELDS, FitConfig, ModelSpec, check_audio_compatible, config_changes
from .distributed import ShardedRaysampler, check_divisible, is_main, share, world_size, wrap_ddp
from .inference import HeadModel, HeadTorsoModel
from .losses import opacity_entropy
from .metrics import psnr
from .step import batch_loss, batch_stats, draw_frames


class _Progress:
    """Step counter and history as a checkpointable."""

    def __init__(self) -> None:
        self.step = 0
        self.history: List[Dict[str, Any]] = []

    def state_dict(self):
        return {"step": self.step, "history": self.history}

    def load_state_dict(self, state) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])


class StageTrainer:
    """The resumable loop shared by both stages. Subclasses set ``stage``, ``optimizer``,
    ``checkpointer`` (built with :meth:`_checkpointer`) and implement :meth:`train_step`,
    :meth:`validate`, :meth:`_check_model` and :meth:`_checkpoint_extra`."""

    stage = ""

    def __init__(self, train_set: TalkingHeadDataset, config: FitConfig, workspace: str,
                 device: str, val_set: Optional[TalkingHeadDataset]) -> None:
        self.data, self.val_set, self.config = train_set, val_set, config
        self.device = torch.device(device)
        self.workspace = workspace
        self.progress = _Progress()
        self._config_notes: Dict[str, Any] = {}
        self.world_size = world_size()
        check_divisible(config.cameras_per_step)
        if is_main():  # other processes never touch the workspace
            remove_stale_temporaries(workspace)

    def _checkpointer(self, model, **checkpointables) -> AtomicCheckpointer:
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        return AtomicCheckpointer(model, os.path.join(self.workspace, "checkpoints"), check=self._check_checkpoint,
                                  prefix=STAGE_PREFIXES[self.stage], read_only=not is_main(),
                                  optimizer=self.optimizer, rng=RNGState(), progress=self.progress, **checkpointables)

    # ---- hooks ------------------------------------------------------------------------------------
    def start_fresh(self) -> None:
        """Set-up of a run that does not resume (after seeding)."""

    def train_step(self, step: int) -> Dict[str, float]:
        raise NotImplementedError

    def validate(self, count: int) -> float:
        raise NotImplementedError

    def _check_model(self, path: str, data: Dict) -> None:
        """Raises unless checkpoint ``data`` holds this trainer's model (run before loading)."""
        raise NotImplementedError

    def _checkpoint_extra(self) -> Dict[str, Any]:
        """Entries saved beside the checkpointables (what :meth:`_check_model` reads)."""
        raise NotImplementedError

    def _postfix(self) -> Dict[str, str]:
        return {}

    # ---- one step ---------------------------------------------------------------------------------
    def learning_rate_factor(self, step: int) -> float:
        return self.config.lr_decay ** min(step / self.config.iters, 1.0)

    def _set_learning_rates(self, step: int) -> None:
        factor = self.learning_rate_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def _frames(self, step: int) -> torch.Tensor:
        """This step's frames (B,) (of every process); starts decoding the next step's frames of
        this process's cameras (overlaps this step)."""
        upcoming = draw_frames(self.config, step + 1, len(self.data))
        self.data.prefetch(upcoming[share(len(upcoming))])
        return draw_frames(self.config, step, len(self.data))

    # ---- checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        """Writes the checkpoint of the current step (rank 0 only; the state is the same on every rank)."""
        if is_main():
            self.checkpointer.save(f"{STAGE_PREFIXES[self.stage]}_{self.progress.step:07d}", stage=self.stage,
                                   config=self.config.to_dict(), world_size=self.world_size,
                                   **self._checkpoint_extra())

    def _check_checkpoint(self, path: str, data: Dict) -> None:
        """Refuses a checkpoint of another stage, model or training config (run on every read,
        before anything is loaded); notes changed operational fields (checkpoint/validation
        intervals), which do not change what is trained."""
        stage = data.get("stage", "head")  # head checkpoints of earlier versions have no stage
        if stage != self.stage:
            raise ValueError(f"checkpoint {path} is a {stage}-stage checkpoint; this is the {self.stage} stage")
        if "config" not in data:
            raise ValueError(f"checkpoint {path} has no config (made by another version?)")
        self._check_model(path, data)
        saved = int(data.get("world_size", 1))  # checkpoints of earlier versions: one process
        if saved != self.world_size:
            raise ValueError(
                f"--resume: checkpoint {path} was trained by {saved} process(es), this run has "
                f"{self.world_size}: resume with the same number of processes (torchrun --nnodes x "
                f"--nproc_per_node = {saved}), or use another --workspace")
        changes = config_changes(data["config"], self.config)
        refused = {k: v for k, v in changes.items() if k not in OPERATIONAL_FIELDS}
        if refused:
            flags = ", ".join(f"--{k.replace('_', '-')} {old} (asked: {new})" for k, (old, new) in refused.items())
            raise ValueError(
                f"--resume: checkpoint {path} was trained with a different config: {flags}. Continuing "
                f"with other values would silently change the run (e.g. --iters rescales the "
                f"learning-rate schedule): pass the checkpoint's values, or use another --workspace")
        self._config_notes = {k: {"was": old, "now": new} for k, (old, new) in changes.items()}

    def resume(self) -> Optional[str]:
        """Loads the workspace's newest readable checkpoint of this stage (model, optimizer, RNG,
        step, ...); returns its path, or None if there is none."""
        path = self.checkpointer.resume()
        if path is not None and self._config_notes:
            self.progress.history.append({"step": self.progress.step, "config_change": self._config_notes})
            if is_main():
                print(f"resuming {path} with changed {sorted(self._config_notes)}: {self._config_notes}")
        return path

    # ---- the loop -------------------------------------------------------------------------------------
    def _rng_devices(self) -> List[int]:
        if self.device.type != "cuda":
            return []
        return [self.device.index if self.device.index is not None else torch.cuda.current_device()]

    def fit(self, resume: bool = False, progress: bool = True, stop_at: Optional[int] = None) -> List[Dict[str, Any]]:
        """Runs (or with ``resume`` continues) training to ``config.iters`` steps (or ``stop_at``)
        and returns the history (one dict per logged step).

        A fresh run seeds the training draws with ``config.seed``; either way training runs in
        a forked RNG, so the caller's global RNG state is not changed. Each checkpoint is saved
        before the validation of the same step (a failing validation loses nothing). Under
        torchrun, progress and validation are rank 0's (validation consumes no random numbers,
        so the ranks' RNG streams stay equal).
        """
        cfg = self.config
        with torch.random.fork_rng(devices=self._rng_devices()):
            if not (resume and self.resume()):
                torch.manual_seed(cfg.seed)
                self.start_fresh()
            end = cfg.iters if stop_at is None else min(stop_at, cfg.iters)
            interval = cfg.checkpoint_interval
            bar = tqdm(total=cfg.iters, initial=self.progress.step, disable=not (progress and is_main()),
                       unit="step", desc=f"fit {self.stage}", dynamic_ncols=True, mininterval=0.5)
            t0, smooth = time.perf_counter(), None
            while self.progress.step < end:
                step = self.progress.step
                stats = self.train_step(step)
                smooth = stats["psnr"] if smooth is None else 0.9 * smooth + 0.1 * stats["psnr"]
                self.progress.step = done = step + 1
                if step % 10 == 0 or done == cfg.iters:
                    stats["time"] = time.perf_counter() - t0
                    self.progress.history.append(stats)
                if done % interval == 0 or done == cfg.iters:
                    self.save()
                if is_main() and self.val_set is not None and cfg.validate_every and (
                        done % cfg.validate_every == 0 or done == cfg.iters):
                    val = self.validate(cfg.validate_frames)
                    self.progress.history.append({"step": step, "val_psnr": val})
                    bar.write(f"step {done}: validation PSNR {val:.2f} dB")
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{smooth:.2f}", **self._postfix())
                bar.update(1)
            bar.close()
        return self.progress.history


class TalkingHeadTrainer(StageTrainer):
    """Trains a :class:`HeadModel` on one dataset split (see module docstring).

    Args:
        train_set: the training split (its audio features and length fix the model spec).
        config: hyper-parameters.
        workspace: output folder (``checkpoints/`` goes there; stale temporaries of a killed run
            are removed from both).
        device: torch device.
        val_set: optional held-out split for periodic validation.
    """

    stage = "head"

    def __init__(self, train_set: TalkingHeadDataset, config: FitConfig, workspace: str,
                 device: str = "cpu", val_set: Optional[TalkingHeadDataset] = None) -> None:
        super().__init__(train_set, config, workspace, device, val_set)
        self.spec = ModelSpec.for_dataset(train_set.audio_features, len(train_set))
        check_audio_compatible(self.spec, train_set.audio_features, "training data")
        self.head = HeadModel(self.spec, config, self.device)
        self.field, self.grid = self.head.field, self.head.grid
        raysampler = self.head.raysampler(train_set.height, train_set.width)
        if self.world_size > 1:  # marches the whole step, keeps this process's cameras
            raysampler = ShardedRaysampler(raysampler)
        self.renderer = ImplicitRenderer(raysampler=raysampler, raymarcher=self.head.raymarcher)
        self.parallel_field = wrap_ddp(self.field)  # the field itself in a single process
        self.optimizer = torch.optim.Adam(self.field.param_groups(config.lr, config.lr_net),
                                          betas=(0.9, 0.99), eps=1e-15)
        self.checkpointer = self._checkpointer(self.field, grid=self.grid)

    def start_fresh(self) -> None:
        self.mark_unseen()

    def mark_unseen(self) -> None:
        """Cells no training camera sees stay empty (a subset of cameras: the head moves little)."""
        n = len(self.data)
        pick = torch.linspace(0, n - 1, min(n, self.config.unseen_cameras)).round().long()
        self.grid.mark_unseen(self.data.cameras(pick, self.device), (self.data.height, self.data.width))

    def _density_fn(self):
        """Occupancy-update density with a random training frame's audio and eye, drawn at the
        first call (so steps without an update draw nothing)."""
        drawn: Dict[str, torch.Tensor] = {}

        def density(points: torch.Tensor) -> torch.Tensor:
            if not drawn:
                i = torch.randint(0, len(self.data), (1,))
                audio = attention_windows(self.data.audio_features, self.data.aud_index[i]).to(self.device)
                drawn["code"] = self.field.encode_audio(audio)
                drawn["eye"] = self.data.eye[i].to(self.device)
            return self.field.density(points, audio_code=drawn["code"], eye=drawn["eye"])

        return density

    def train_step(self, step: int) -> Dict[str, float]:
        """Grid update, batch loss, backward, Adam step; returns the step's stats."""
        self._set_learning_rates(step)
        self.field.train()
        with torch.no_grad():
            self.grid.update(self._density_fn(), step)
        indices = self._frames(step)
        loss, stats = batch_loss(self.parallel_field, self.renderer, self.data, indices, step, self.config,
                                 self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"step": step, **stats}

    def validate(self, count: int) -> float:
        """Mean PSNR over ``count`` validation frames (no random numbers consumed)."""
        return self.head.validate(self.val_set, count)

    def _checkpoint_extra(self) -> Dict[str, Any]:
        return {"spec": self.spec.to_dict()}

    def _check_model(self, path: str, data: Dict) -> None:
        if "spec" not in data:
            raise ValueError(f"checkpoint {path} has no model spec (made by another version?)")
        spec = ModelSpec.from_dict(data["spec"], path)
        if spec != self.spec:
            raise ValueError(f"checkpoint {path} was made for model {spec}, not {self.spec} "
                             f"(other training data or audio features?)")

    def _postfix(self) -> Dict[str, str]:
        return {"occ": f"{self.grid.occupancy_fraction:.3f}"}


class _FrozenHead:
    """The torso stage's head as a checkpointable (weights, grid, spec, config)."""

    def __init__(self, head: HeadModel) -> None:
        self.head = head

    def state_dict(self) -> Dict[str, Any]:
        return self.head.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.head.load_state_dict(state)


class TorsoTrainer(StageTrainer):
    """RAD-NeRF's torso stage: a :class:`TorsoField` trained behind the frozen ``head`` (see the
    module docstring). Arguments as :class:`TalkingHeadTrainer`, plus the fitted ``head``; the
    training split must have torso images (``torso_imgs/``)."""

    stage = "torso"

    def __init__(self, train_set: TalkingHeadDataset, head: HeadModel, config: FitConfig, workspace: str,
                 device: str = "cpu", val_set: Optional[TalkingHeadDataset] = None) -> None:
        if not train_set.has_torso:
            raise ValueError(f"the torso stage needs RAD-NeRF's torso images (torso_imgs/) in {train_set.root}")
        super().__init__(train_set, config, workspace, device, val_set)
        self.head = head
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.torso = TorsoField(num_frames=len(train_set))
        self.model = HeadTorsoModel(head, self.torso)
        self.parallel_torso = wrap_ddp(self.torso)  # the torso itself in a single process
        self.optimizer = torch.optim.Adam(self.torso.param_groups(config.lr, config.lr_net),
                                          betas=(0.9, 0.99), eps=1e-15)
        self.checkpointer = self._checkpointer(self.torso, head=_FrozenHead(head))

    def batch_loss(self, indices: torch.Tensor):
        """(loss, stats) of ``rays_per_camera`` uniform pixels of each training item ``indices`` (B,)
        (under torchrun: every process draws all pixels, then keeps its share of the items)."""
        cfg, data = self.config, self.data
        shape = (len(indices), cfg.rays_per_camera)
        rows = torch.randint(0, data.height, shape, device=self.device)
        cols = torch.randint(0, data.width, shape, device=self.device)
        mine = share(len(indices))
        indices, rows, cols = indices[mine], rows[mine], cols[mine]
        coords = self.model.coords(data.height, data.width)[rows * data.width + cols]  # (B, n, 2)
        alpha, rgb = self.parallel_torso(coords, data.torso_poses[indices].to(self.device), indices.to(self.device))
        cam = torch.arange(len(indices), device=self.device)[:, None]
        target = torch.stack([data.torso_background(int(i)) for i in indices]).to(self.device)[cam, rows, cols]
        pred = rgb * alpha + data.background.to(self.device)[rows, cols] * (1.0 - alpha)
        mse = torch.mean((pred - target) ** 2)
        loss = mse + cfg.entropy_weight * opacity_entropy(alpha)
        return loss, batch_stats(loss, mse)

    def train_step(self, step: int) -> Dict[str, float]:
        self._set_learning_rates(step)
        self.torso.train()
        loss, stats = self.batch_loss(self._frames(step))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"step": step, **stats}

    def validate(self, count: int) -> float:
        """Mean full-frame PSNR over ``count`` validation frames (no random numbers consumed)."""
        data = self.val_set
        picks = torch.linspace(0, len(data) - 1, min(count, len(data))).round().long().tolist()
        with torch.random.fork_rng(devices=[]):
            return sum(psnr(self.model.render(data, i), data.image(i).to(self.device)) for i in picks) / len(picks)

    def _checkpoint_extra(self) -> Dict[str, Any]:
        return {"torso_frames": self.torso.num_frames}

    def _check_model(self, path: str, data: Dict) -> None:
        if data.get("torso_frames") != self.torso.num_frames or "head" not in data:
            raise ValueError(f"checkpoint {path} holds a torso of {data.get('torso_frames')} frames, not "
                             f"{self.torso.num_frames} (other training data?)")
        head = data["head"]
        for key, mine in (("spec", self.head.spec.to_dict()), ("config", self.head.config.to_dict())):
            if head.get(key) != mine:
                raise ValueError(f"checkpoint {path} was trained behind another head ({key} "
                                 f"{head.get(key)}, not {mine})")
