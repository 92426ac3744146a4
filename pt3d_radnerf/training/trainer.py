"""Fitting an AudioRadianceField to a talking-head dataset with PyTorch3D's ImplicitRenderer.

One training step (RAD-NeRF's recipe, on our three components):

1. draw ``cameras_per_step`` training frames and ``rays_per_camera`` pixels in each, with the
   lower face drawn ``face_ray_weight`` times more often (the mouth is where audio matters);
2. ``ImplicitRenderer(OccupancyGridRaysampler, OccupancyGridRaymarcher)`` renders them with each
   frame's audio window (8 x W x C), eye area and latent code;
3. loss = MSE(render over bc.jpg, ground truth) + ``entropy_weight`` x opacity entropy
   + ``ambient_weight`` x ramp x |ambient| on rays outside the lower-face rectangle;
4. Adam (0.9, 0.99, eps 1e-15), grids at ``lr``, nets at ``lr_net`` (attention 5x), every
   learning rate decayed exponentially to ``lr_decay`` x its start over the run;
5. every 16 steps the occupancy grid is updated with a random training frame's audio and eye.

Every random draw goes through the global torch RNG, which is checkpointed with the model and
optimizer, so ``fit(resume=True)`` continues bit-for-bit (CPU, fixed thread count).
"""

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from pytorch3d.renderer import ImplicitRenderer
from tqdm import tqdm

from ..audio import attention_windows
from ..data import TalkingHeadDataset
from ..models import AudioRadianceField
from ..renderer import OccupancyGridRaymarcher, OccupancyGridRaysampler, ndc_grid_pixels, render_compacted
from .checkpoint import AtomicCheckpointer, RNGState
from .losses import ambient_loss, opacity_entropy, ramp
from .metrics import psnr


@dataclass
class FitConfig:
    """Training hyper-parameters (defaults: the 10-minute CPU run on the synthetic head)."""

    iters: int = 1000
    cameras_per_step: int = 4
    rays_per_camera: int = 1024
    face_ray_weight: float = 4.0
    lr: float = 5e-3
    lr_net: float = 5e-4
    lr_decay: float = 0.1
    entropy_weight: float = 1e-4
    ambient_weight: float = 0.1
    ambient_ramp_iters: int = 500
    t_thresh: float = 1e-4
    max_samples_per_ray: Optional[int] = 16
    step_size: float = 2 * math.sqrt(3) / 128
    grid_resolution: int = 64
    occupancy_warmup: int = 128
    occupancy_decay: float = 0.8
    density_thresh: float = 10.0
    occupancy_update_every: int = 16
    unseen_cameras: int = 8
    checkpoint_every: int = 250
    validate_every: int = 250
    validate_frames: int = 4
    seed: int = 0


class ModelSpec(dict):
    """The constructor arguments of the field, stored in checkpoints (plain types only)."""

    @classmethod
    def for_dataset(cls, data: TalkingHeadDataset, config: FitConfig) -> "ModelSpec":
        _, window, width = data.audio_features.shape
        return cls(audio_window=int(window), audio_width=int(width), num_frames=len(data),
                   grid_resolution=int(config.grid_resolution), image_size=[data.height, data.width])

    def build(self) -> AudioRadianceField:
        return AudioRadianceField(audio_type=(self["audio_window"], self["audio_width"]),
                                  num_frames=self["num_frames"], grid_resolution=self["grid_resolution"])


class _Progress:
    """Step counter and history as a checkpointable."""

    def __init__(self) -> None:
        self.step = 0
        self.history: List[Dict[str, float]] = []

    def state_dict(self):
        return {"step": self.step, "history": self.history}

    def load_state_dict(self, state) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])


class TalkingHeadTrainer:
    """Trains an :class:`AudioRadianceField` on one dataset split (see module docstring).

    Args:
        train_set: the training split.
        config: hyper-parameters.
        workspace: output folder (checkpoints/ goes there).
        device: torch device.
        val_set: optional held-out split for periodic validation.
        spec: model spec (default: derived from ``train_set``); a checkpoint's spec on resume.
    """

    def __init__(self, train_set: TalkingHeadDataset, config: FitConfig, workspace: str,
                 device: str = "cpu", val_set: Optional[TalkingHeadDataset] = None,
                 spec: Optional[ModelSpec] = None) -> None:
        self.data, self.val_set, self.config = train_set, val_set, config
        self.device = torch.device(device)
        self.workspace = workspace
        torch.manual_seed(config.seed)
        self.spec = spec or ModelSpec.for_dataset(train_set, config)
        check_audio_compatible(self.spec, train_set.audio_features, "training data")
        self.field = self.spec.build().to(self.device)
        h, w = train_set.height, train_set.width
        self.raysampler = OccupancyGridRaysampler(image_width=w, image_height=h, mode="packed",
                                                  dt_min=config.step_size,
                                                  max_samples_per_ray=config.max_samples_per_ray)
        self.raymarcher = OccupancyGridRaymarcher(t_thresh=config.t_thresh)
        self.renderer = ImplicitRenderer(raysampler=self.raysampler, raymarcher=self.raymarcher)
        self.optimizer = torch.optim.Adam(self.field.param_groups(config.lr, config.lr_net),
                                          betas=(0.9, 0.99), eps=1e-15)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        self.progress = _Progress()
        self.checkpointer = AtomicCheckpointer(self.field, os.path.join(workspace, "checkpoints"),
                                               check=self._check_spec, optimizer=self.optimizer,
                                               rng=RNGState(), progress=self.progress)
        self.background = train_set.background.to(self.device)
        self._face_weights = self._pixel_weights(train_set)
        self._lower_face_rects = torch.tensor(train_set.lower_face_rects, device=self.device)  # (N, 4)
        self._configure_grid()

    # ---- setup ----------------------------------------------------------------------------------
    def _pixel_weights(self, data: TalkingHeadDataset) -> torch.Tensor:
        """(N, H, W) ray-sampling weights: 1, and face_ray_weight in the lower-face rectangle."""
        weights = torch.ones(len(data), data.height, data.width)
        for i, (x0, x1, y0, y1) in enumerate(data.lower_face_rects):
            weights[i, max(y0, 0) : y1, max(x0, 0) : x1] = self.config.face_ray_weight
        return weights

    def _audio(self, data: TalkingHeadDataset, indices: torch.Tensor) -> torch.Tensor:
        return attention_windows(data.audio_features, data.aud_index[indices]).to(self.device)

    def _images(self, data: TalkingHeadDataset, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([data.image(int(i)) for i in indices]).to(self.device)

    def _density_fn(self):
        """Occupancy-update density: a random training frame's audio and eye (RAD-NeRF's union
        of occupancy over audio)."""
        i = torch.randint(0, len(self.data), (1,))
        enc_a = self.field.encode_audio(self._audio(self.data, i))[0]
        eye = float(self.data.eye_areas[i])
        return lambda points: self.field.density(points, enc_a=enc_a, eye=eye)

    def _configure_grid(self) -> None:
        grid = self.field.occupancy_grid
        grid.warmup_steps = self.config.occupancy_warmup
        # Short runs: 0.8 per update lets empty cells fall below the threshold within ~8 updates
        # (instant-ngp's 0.95 needs ~35, a third of a 2k-step run).
        grid.decay = self.config.occupancy_decay
        grid.update_every = self.config.occupancy_update_every
        # RAD-NeRF's density_thresh 10: a cell is occupied above min(mean sigma, 10). Against the
        # grid's near-zero default this also prunes low-density cells around the head, so
        # training and rendering evaluate fewer samples (README: bench_fit).
        grid.threshold = self.config.density_thresh

    def _mark_unseen(self) -> None:
        """Cells no training camera sees stay empty (a subset of cameras: the head moves little)."""
        n = len(self.data)
        pick = torch.linspace(0, n - 1, min(n, self.config.unseen_cameras)).round().long()
        self.field.occupancy_grid.mark_unseen(self.data.cameras(pick, self.device),
                                              (self.data.height, self.data.width))

    # ---- one step ---------------------------------------------------------------------------------
    def learning_rate_factor(self, step: int) -> float:
        return self.config.lr_decay ** min(step / max(self.config.iters, 1), 1.0)

    def train_step(self, step: int) -> Dict[str, float]:
        cfg = self.config
        factor = self.learning_rate_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        self.field.train()
        with torch.no_grad():
            self.field.occupancy_grid.update(self._density_fn(), step)

        idx = torch.randint(0, len(self.data), (cfg.cameras_per_step,))
        (images, aux), bundle = self.renderer(
            cameras=self.data.cameras(idx, self.device), volumetric_function=self.field,
            audio=self._audio(self.data, idx), frame_index=idx.to(self.device),
            eye=self.data.eye_areas[idx].to(self.device), mask=self._face_weights[idx].to(self.device),
            n_rays_per_image=cfg.rays_per_camera, stratified_sampling=True, return_aux=True,
        )
        rows, cols = ndc_grid_pixels(bundle.xys[..., 0, :], self.data.width, self.data.height)  # (B, n)
        target = self._images(self.data, idx.tolist())
        cam = torch.arange(len(idx), device=self.device)[:, None]
        gt = target[cam, rows, cols]
        opacity = images[..., 0, 3]
        pred = images[..., 0, :3] + (1.0 - opacity[..., None]) * self.background[rows, cols]
        mse = torch.mean((pred - gt) ** 2)
        loss = mse + cfg.entropy_weight * opacity_entropy(opacity)

        # Ambient magnitude composited per ray with the (detached) weights, penalised outside
        # the lower face: audio may only move the mouth region.
        amb = self.field.last_aux["ambient"].abs().sum(-1) * aux["weights"].detach()
        amb_ray = torch.zeros(bundle.n_rays, device=self.device).index_add_(0, bundle.ray_indices, amb)
        rects = self._lower_face_rects[idx.to(self.device)]
        inside = ((cols >= rects[:, 0:1]) & (cols < rects[:, 1:2]) & (rows >= rects[:, 2:3])
                  & (rows < rects[:, 3:4]))
        loss = loss + cfg.ambient_weight * ramp(step, cfg.ambient_ramp_iters) * ambient_loss(
            amb_ray, inside.reshape(-1))

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        batch_psnr = -10.0 * math.log10(max(float(mse.detach()), 1e-10))
        return {"step": step, "loss": float(loss.detach()), "psnr": batch_psnr,
                "samples_per_ray": bundle.n_samples / max(bundle.n_rays, 1)}

    # ---- rendering -----------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, data: TalkingHeadDataset, index: int, audio: Optional[torch.Tensor] = None,
               eye: Optional[float] = None, pose_index: Optional[int] = None) -> torch.Tensor:
        """(H, W, 3) render of item ``index`` of ``data`` over the background, as at inference:
        latent code 0, the item's audio window (or ``audio`` (8, W, C)) and eye area, through the
        alive-ray compaction path (same image as ``self.renderer``, fewer field evaluations)."""
        self.field.eval()
        pose = index if pose_index is None else pose_index
        audio = self._audio(data, torch.tensor([index])) if audio is None else audio[None].to(self.device)
        eye = float(data.eye_areas[index]) if eye is None else eye
        images = render_compacted(
            data.cameras([pose], self.device), self.field, self.raysampler, self.raymarcher,
            audio_code=self.field.encode_audio(audio), frame_index=torch.zeros(1, dtype=torch.long, device=self.device),
            eye=torch.tensor([eye], device=self.device), background=data.background.to(self.device)[None],
        )
        return images[0, ..., :3].clamp(0.0, 1.0)

    def validate(self, count: int) -> float:
        """Mean PSNR over ``count`` evenly spread validation frames."""
        data = self.val_set
        picks = torch.linspace(0, len(data) - 1, min(count, len(data))).round().long().tolist()
        return sum(psnr(self.render(data, i), data.image(i).to(self.device)) for i in picks) / len(picks)

    # ---- the loop -------------------------------------------------------------------------------------
    def save(self) -> None:
        step = self.progress.step
        self.checkpointer.save(f"model_{step:07d}", spec=dict(self.spec),
                               config=dataclasses.asdict(self.config))

    def resume(self) -> bool:
        """Loads the workspace's last checkpoint (model, optimizer, RNG, step); False if none."""
        if not self.checkpointer.has_checkpoint():
            return False
        self.checkpointer.load(self.checkpointer.get_checkpoint_file())  # spec: _check_spec
        return True

    def _check_spec(self, path: str, data: Dict) -> None:
        """Refuses a checkpoint made for another model spec (run on every checkpoint read)."""
        spec = data.get("spec")
        if spec is not None and dict(spec) != dict(self.spec):
            raise ValueError(f"checkpoint {path} was made for model {spec}, not {dict(self.spec)}")

    def fit(self, resume: bool = False, progress: bool = True, stop_at: Optional[int] = None) -> List[Dict[str, float]]:
        """Runs (or continues) training to ``config.iters`` steps (or ``stop_at``) and returns the
        history (one dict per logged step)."""
        cfg = self.config
        if not (resume and self.resume()):
            torch.manual_seed(cfg.seed)
            self._mark_unseen()
        end = cfg.iters if stop_at is None else min(stop_at, cfg.iters)
        bar = tqdm(total=cfg.iters, initial=self.progress.step, disable=not progress, unit="step",
                   desc="fit", dynamic_ncols=True, mininterval=0.5)
        t0, smooth = time.perf_counter(), None
        while self.progress.step < end:
            step = self.progress.step
            stats = self.train_step(step)
            smooth = stats["psnr"] if smooth is None else 0.9 * smooth + 0.1 * stats["psnr"]
            self.progress.step = step + 1
            if step % 10 == 0 or self.progress.step == cfg.iters:
                stats["time"] = time.perf_counter() - t0
                self.progress.history.append(stats)
            if self.val_set is not None and cfg.validate_every and (
                    self.progress.step % cfg.validate_every == 0 or self.progress.step == cfg.iters):
                val = self.validate(cfg.validate_frames)
                self.progress.history.append({"step": step, "val_psnr": val})
                bar.write(f"step {self.progress.step}: validation PSNR {val:.2f} dB")
            if self.progress.step % cfg.checkpoint_every == 0 or self.progress.step == cfg.iters:
                self.save()
            bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{smooth:.2f}",
                            occ=f"{self.field.occupancy_grid.occupancy_fraction:.3f}")
            bar.update(1)
        bar.close()
        return self.progress.history


def check_audio_compatible(spec: ModelSpec, features: torch.Tensor, what: str) -> None:
    """Clear error when audio features (N, W, C) do not fit a model's audio window and width."""
    _, window, width = features.shape
    if (window, width) != (spec["audio_window"], spec["audio_width"]):
        raise ValueError(
            f"{what} has audio windows of {window} x {width} features, but the model was built for "
            f"{spec['audio_window']} x {spec['audio_width']}: use the same audio feature type "
            f"(e.g. logmel 16 x 80, deepspeech 16 x 29) as the checkpoint"
        )


def load_spec(path: str) -> ModelSpec:
    """The model spec stored in a checkpoint file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if "spec" not in data or "model" not in data:
        raise ValueError(f"{path} is not a pt3d_radnerf training checkpoint (no model spec)")
    return ModelSpec(data["spec"])


def write_json(path: str, payload) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
