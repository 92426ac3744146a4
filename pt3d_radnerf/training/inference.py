"""Inference: a fitted head (field + occupancy grid) and the one function that renders a frame.

:func:`render_frame` is what validation, evaluation, new-audio videos and ``--render-only`` all
call; :class:`HeadModel` holds what it needs and is built either for training (from a spec and a
config) or straight from a checkpoint (no training set, no optimizer).
"""

from typing import Dict, Optional, Tuple, Union

import torch

from ..audio import attention_windows
from ..data import TalkingHeadDataset
from ..renderer import OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler, render_compacted
from .checkpoint import CheckpointReadError, read_checkpoint
from .config import FitConfig, ModelSpec
from .metrics import psnr


def build_grid(spec: ModelSpec, config: FitConfig) -> OccupancyGrid:
    """The occupancy grid of a fit over the field's box, with the config's update policy
    (``threshold`` in sigma units, RAD-NeRF's density_thresh)."""
    return OccupancyGrid(aabb=spec.aabb, resolution=config.grid_resolution, step_size=config.step_size,
                         update_every=config.occupancy_update_every, warmup_steps=config.occupancy_warmup,
                         decay=config.occupancy_decay, threshold=config.density_thresh)


@torch.no_grad()
def render_frame(field, raysampler: OccupancyGridRaysampler, cameras, audio_code: torch.Tensor,
                 eye: Union[float, torch.Tensor], background: torch.Tensor,
                 raymarcher: Optional[OccupancyGridRaymarcher] = None) -> torch.Tensor:
    """(H, W, 3) image of one camera over ``background``, as at inference: latent code 0.

    Args:
        field: an AudioRadianceField (put in eval mode here).
        raysampler: a packed OccupancyGridRaysampler over the image grid, holding the grid.
        cameras: PyTorch3D cameras with batch 1, on the field's device.
        audio_code: (1, dim_aud) encoded audio (``field.encode_audio``).
        eye: the eye-area value (float or (1,)).
        background: (H, W, 3) image behind the head.
        raymarcher: compositing options (t_thresh); default ``OccupancyGridRaymarcher()``.

    Renders through the alive-ray compaction path: the image ``ImplicitRenderer(raysampler,
    raymarcher)`` gives, with fewer field evaluations.
    """
    field.eval()
    device = audio_code.device
    images = render_compacted(
        cameras, field, raysampler, raymarcher, audio_code=audio_code,
        frame_index=torch.zeros(1, dtype=torch.long, device=device),
        eye=torch.as_tensor(eye, dtype=torch.float32, device=device).reshape(1),
        background=background.to(device)[None],
    )
    return images[0, ..., :3].clamp(0.0, 1.0)


class HeadModel:
    """A talking head: ``field`` (AudioRadianceField), its occupancy ``grid``, the ``spec`` and
    ``config`` they were built from, and per-image-size raysamplers marching the grid.

    Args:
        spec, config: what to build; the field is initialised from ``config.seed`` without
            touching the caller's global RNG.
        device: torch device.
    """

    def __init__(self, spec: ModelSpec, config: FitConfig, device: Union[str, torch.device] = "cpu") -> None:
        self.spec, self.config, self.device = spec, config, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.field = spec.build()
        self.field.to(self.device)
        self.grid = build_grid(spec, config).to(self.device)
        self.raymarcher = OccupancyGridRaymarcher(t_thresh=config.t_thresh)
        self._raysamplers: Dict[Tuple[int, int], OccupancyGridRaysampler] = {}

    def raysampler(self, height: int, width: int) -> OccupancyGridRaysampler:
        """The packed raysampler for (height, width) images, marching ``grid`` at the config's step."""
        key = (int(height), int(width))
        if key not in self._raysamplers:
            self._raysamplers[key] = OccupancyGridRaysampler(
                image_width=key[1], image_height=key[0], mode="packed", occupancy_grid=self.grid,
                dt_min=self.config.step_size, max_samples_per_ray=self.config.max_samples_per_ray,
            ).to(self.device)
        return self._raysamplers[key]

    @classmethod
    def from_checkpoint(cls, path: str, device: Union[str, torch.device] = "cpu") -> "HeadModel":
        """The head stored in a training checkpoint (model, grid, spec and config).

        Raises:
            FileNotFoundError / CheckpointReadError: missing or unreadable file (named).
        """
        data = read_checkpoint(path)
        for key in ("spec", "config", "grid"):
            if key not in data:
                raise CheckpointReadError(f"cannot read checkpoint {path}: it has no {key!r} entry "
                                          f"(not a checkpoint of this pt3d_radnerf version)")
        head = cls(ModelSpec.from_dict(data["spec"], path), FitConfig.from_dict(data["config"], path), device)
        head.field.load_state_dict(data["model"], strict=True)
        head.grid.load_state_dict(data["grid"], strict=True)
        head.steps = int(data.get("progress", {}).get("step", 0))
        head.history = list(data.get("progress", {}).get("history", []))
        return head

    def audio_windows(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, 8, W, C) attention windows of features (N, W, C) around rows ``index`` (B,)."""
        return attention_windows(features, index).to(self.device)

    @torch.no_grad()
    def render(self, data: TalkingHeadDataset, index: int, audio: Optional[torch.Tensor] = None,
               eye: Optional[float] = None, pose_index: Optional[int] = None) -> torch.Tensor:
        """(H, W, 3) render of item ``index`` of ``data``: its camera (or item ``pose_index``'s),
        its audio window (or ``audio`` (8, W, C)) and eye area (or ``eye``), over the pose's head
        background (the ground-truth torso on bc.jpg when the folder has torso_imgs/, else bc.jpg:
        RAD-NeRF's head-only evaluation)."""
        pose = index if pose_index is None else pose_index
        if audio is None:
            audio = self.audio_windows(data.audio_features, data.aud_index[index : index + 1])
        else:
            audio = audio[None].to(self.device)
        eye = float(data.eye[index]) if eye is None else eye
        return render_frame(self.field, self.raysampler(data.height, data.width),
                            data.cameras([pose], self.device), self.field.encode_audio(audio), eye,
                            data.head_background(pose), self.raymarcher)

    def validate(self, data: TalkingHeadDataset, count: int) -> float:
        """Mean PSNR over ``count`` evenly spread items of ``data``. Consumes no global random
        numbers (training continues identically with or without validation)."""
        picks = torch.linspace(0, len(data) - 1, min(count, len(data))).round().long().tolist()
        with torch.random.fork_rng(devices=[]):
            return sum(psnr(self.render(data, i), data.image(i).to(self.device)) for i in picks) / len(picks)
