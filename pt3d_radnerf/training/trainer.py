"""The training loop: an :class:`~.inference.HeadModel` fitted to a talking-head dataset.

Per step (:mod:`.step` has the batch and the loss): the occupancy grid is updated (every
``occupancy_update_every`` steps, with a random training frame's audio and eye: RAD-NeRF's union
of occupancy over audio), the batch loss is back-propagated, and Adam (0.9, 0.99, eps 1e-15)
steps with grids at ``lr``, nets at ``lr_net`` (attention 5x), every learning rate decayed
exponentially to ``lr_decay`` x its start over the run.

Checkpoints hold the field, the grid, the optimizer, the RNG, the step/history, the model spec
and the config. :meth:`TalkingHeadTrainer.fit` runs inside a forked RNG (the caller's global RNG
is left as it was) whose state is checkpointed, so ``fit(resume=True)`` continues bit-for-bit at
a fixed thread count. A resume with a different training config is refused.
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
from .checkpoint import AtomicCheckpointer, RNGState
from .config import OPERATIONAL_FIELDS, FitConfig, ModelSpec, check_audio_compatible, config_changes
from .inference import HeadModel
from .step import batch_loss


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


def _field_density(field, points: torch.Tensor, audio_code: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """sigma (N,) at points (N, 3) for one camera's audio_code (1, dim_aud) and eye (1,)."""
    return field.density(points, audio_code=audio_code, eye=eye)


class TalkingHeadTrainer:
    """Trains a :class:`HeadModel` on one dataset split (see module docstring).

    Args:
        train_set: the training split (its audio features and length fix the model spec).
        config: hyper-parameters.
        workspace: output folder (``checkpoints/`` goes there; stale temporaries of a killed run
            are removed from both).
        device: torch device.
        val_set: optional held-out split for periodic validation.
    """

    def __init__(self, train_set: TalkingHeadDataset, config: FitConfig, workspace: str,
                 device: str = "cpu", val_set: Optional[TalkingHeadDataset] = None) -> None:
        self.data, self.val_set, self.config = train_set, val_set, config
        self.device = torch.device(device)
        self.workspace = workspace
        self.spec = ModelSpec.for_dataset(train_set.audio_features, len(train_set))
        check_audio_compatible(self.spec, train_set.audio_features, "training data")
        self.head = HeadModel(self.spec, config, self.device)
        self.field, self.grid = self.head.field, self.head.grid
        self.renderer = ImplicitRenderer(raysampler=self.head.raysampler(train_set.height, train_set.width),
                                         raymarcher=self.head.raymarcher)
        self.optimizer = torch.optim.Adam(self.field.param_groups(config.lr, config.lr_net),
                                          betas=(0.9, 0.99), eps=1e-15)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        self.progress = _Progress()
        self._config_notes: Dict[str, Any] = {}
        remove_stale_temporaries(workspace)
        self.checkpointer = AtomicCheckpointer(self.field, os.path.join(workspace, "checkpoints"),
                                               check=self._check_checkpoint, optimizer=self.optimizer,
                                               grid=self.grid, rng=RNGState(), progress=self.progress)

    # ---- setup ----------------------------------------------------------------------------------
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
            return _field_density(self.field, points, drawn["code"], drawn["eye"])

        return density

    # ---- one step ---------------------------------------------------------------------------------
    def learning_rate_factor(self, step: int) -> float:
        return self.config.lr_decay ** min(step / self.config.iters, 1.0)

    def train_step(self, step: int) -> Dict[str, float]:
        """Grid update, batch loss, backward, Adam step; returns the step's stats."""
        cfg = self.config
        factor = self.learning_rate_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        self.field.train()
        with torch.no_grad():
            self.grid.update(self._density_fn(), step)
        indices = torch.randint(0, len(self.data), (cfg.cameras_per_step,))
        loss, stats = batch_loss(self.field, self.renderer, self.data, indices, step, cfg, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"step": step, **stats}

    def validate(self, count: int) -> float:
        """Mean PSNR over ``count`` validation frames (no random numbers consumed)."""
        return self.head.validate(self.val_set, count)

    # ---- checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        self.checkpointer.save(f"model_{self.progress.step:07d}", spec=self.spec.to_dict(),
                               config=self.config.to_dict())

    def _check_checkpoint(self, path: str, data: Dict) -> None:
        """Refuses a checkpoint of another model spec or training config (run on every read,
        before anything is loaded); notes changed operational fields (checkpoint/validation
        intervals), which do not change what is trained."""
        if "spec" not in data or "config" not in data:
            raise ValueError(f"checkpoint {path} has no model spec/config (made by another version?)")
        spec = ModelSpec.from_dict(data["spec"], path)
        if spec != self.spec:
            raise ValueError(f"checkpoint {path} was made for model {spec}, not {self.spec} "
                             f"(other training data or audio features?)")
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
        """Loads the workspace's newest readable checkpoint (model, grid, optimizer, RNG, step);
        returns its path, or None if there is none."""
        path = self.checkpointer.resume()
        if path is not None and self._config_notes:
            self.progress.history.append({"step": self.progress.step, "config_change": self._config_notes})
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
        before the validation of the same step (a failing validation loses nothing).
        """
        cfg = self.config
        with torch.random.fork_rng(devices=self._rng_devices()):
            if not (resume and self.resume()):
                torch.manual_seed(cfg.seed)
                self.mark_unseen()
            end = cfg.iters if stop_at is None else min(stop_at, cfg.iters)
            interval = cfg.checkpoint_interval
            bar = tqdm(total=cfg.iters, initial=self.progress.step, disable=not progress, unit="step",
                       desc="fit", dynamic_ncols=True, mininterval=0.5)
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
                if self.val_set is not None and cfg.validate_every and (
                        done % cfg.validate_every == 0 or done == cfg.iters):
                    val = self.validate(cfg.validate_frames)
                    self.progress.history.append({"step": step, "val_psnr": val})
                    bar.write(f"step {done}: validation PSNR {val:.2f} dB")
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{smooth:.2f}",
                                occ=f"{self.grid.occupancy_fraction:.3f}")
                bar.update(1)
            bar.close()
        return self.progress.history
