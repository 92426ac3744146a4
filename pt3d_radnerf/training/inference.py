"""Inference: a fitted head (field + occupancy grid), optionally with its torso, and the one
function that renders the head.

:func:`render_layers` is what validation, evaluation, new-audio videos and ``--render-only`` all
call; :class:`HeadModel` holds what it needs and is built either for training (from a spec and a
config) or straight from a checkpoint (no training set, no optimizer). :class:`HeadTorsoModel`
adds the torso stage's :class:`~pt3d_radnerf.models.TorsoField`: head over torso over bc.jpg.
:func:`load_model` reads either kind of checkpoint.
"""

from typing import Dict, Optional, Tuple, Union

import torch

from ..audio import attention_windows
from ..data import TalkingHeadDataset, bg_coords
from ..models import TorsoField, composite_head_torso
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
def render_layers(field, raysampler: OccupancyGridRaysampler, cameras, audio_code: torch.Tensor,
                  eye: Union[float, torch.Tensor],
                  raymarcher: Optional[OccupancyGridRaymarcher] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The head of one camera as at inference (latent code 0), before any background:
    (premultiplied colour (H, W, 3), opacity (H, W, 1)).

    Args:
        field: an AudioRadianceField (put in eval mode here).
        raysampler: a packed OccupancyGridRaysampler over the image grid, holding the grid.
        cameras: PyTorch3D cameras with batch 1, on the field's device.
        audio_code: (1, dim_aud) encoded audio (``field.encode_audio``).
        eye: the eye-area value (float or (1,)).
        raymarcher: compositing options (t_thresh); default ``OccupancyGridRaymarcher()``.

    Renders through the alive-ray compaction path: what ``ImplicitRenderer(raysampler,
    raymarcher)`` gives, with fewer field evaluations.
    """
    field.eval()
    device = audio_code.device
    images = render_compacted(
        cameras, field, raysampler, raymarcher, audio_code=audio_code,
        frame_index=torch.zeros(1, dtype=torch.long, device=device),
        eye=torch.as_tensor(eye, dtype=torch.float32, device=device).reshape(1), background=None,
    )
    return images[0, ..., :3], images[0, ..., 3:]


def over(layers: Tuple[torch.Tensor, torch.Tensor], background: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) head ``layers`` (:func:`render_layers`) over ``background`` (H, W, 3), clamped to [0, 1]."""
    rgb, opacity = layers
    return (rgb + (1.0 - opacity) * background.to(rgb.device)).clamp(0.0, 1.0)


def render_frame(field, raysampler: OccupancyGridRaysampler, cameras, audio_code: torch.Tensor,
                 eye: Union[float, torch.Tensor], background: torch.Tensor,
                 raymarcher: Optional[OccupancyGridRaymarcher] = None) -> torch.Tensor:
    """(H, W, 3) image of one camera over ``background`` (H, W, 3): :func:`render_layers` then :func:`over`."""
    return over(render_layers(field, raysampler, cameras, audio_code, eye, raymarcher), background)


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
        stage = data.get("stage", "head")
        if stage != "head":
            raise ValueError(f"checkpoint {path} is a {stage}-stage checkpoint, not a head checkpoint "
                             f"(model_*.pth)")
        head = cls.from_state(data, path, device)
        head.steps = int(data.get("progress", {}).get("step", 0))
        head.history = list(data.get("progress", {}).get("history", []))
        return head

    @classmethod
    def from_state(cls, state: Dict, source: str, device: Union[str, torch.device] = "cpu") -> "HeadModel":
        """The head of a ``state`` dict with ``model``, ``grid``, ``spec`` and ``config`` entries (a
        head checkpoint, or :meth:`state_dict`); ``source`` names it in errors."""
        for key in ("model", "spec", "config", "grid"):
            if key not in state:
                raise CheckpointReadError(f"cannot read checkpoint {source}: it has no {key!r} entry "
                                          f"(not a checkpoint of this pt3d_radnerf version)")
        head = cls(ModelSpec.from_dict(state["spec"], source), FitConfig.from_dict(state["config"], source), device)
        head.load_state_dict(state)
        return head

    def state_dict(self) -> Dict:
        """Weights, grid, spec and config: everything :meth:`from_state` rebuilds the head from."""
        return {"model": self.field.state_dict(), "grid": self.grid.state_dict(), "spec": self.spec.to_dict(),
                "config": self.config.to_dict()}

    def load_state_dict(self, state: Dict) -> None:
        """Loads the weights and grid of :meth:`state_dict` (spec and config must be this head's)."""
        self.field.load_state_dict(state["model"], strict=True)
        self.grid.load_state_dict(state["grid"], strict=True)

    def audio_windows(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, 8, W, C) attention windows of features (N, W, C) around rows ``index`` (B,)."""
        return attention_windows(features, index).to(self.device)

    @torch.no_grad()
    def layers(self, data: TalkingHeadDataset, index: int, audio: Optional[torch.Tensor] = None,
               eye: Optional[float] = None, pose_index: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """:func:`render_layers` of item ``index`` of ``data``: its camera (or item ``pose_index``'s),
        its audio window (or ``audio`` (8, W, C)) and eye area (or ``eye``)."""
        pose = index if pose_index is None else pose_index
        if audio is None:
            audio = self.audio_windows(data.audio_features, data.aud_index[index : index + 1])
        else:
            audio = audio[None].to(self.device)
        eye = float(data.eye[index]) if eye is None else eye
        return render_layers(self.field, self.raysampler(data.height, data.width), data.cameras([pose], self.device),
                             self.field.encode_audio(audio), eye, self.raymarcher)

    def render(self, data: TalkingHeadDataset, index: int, audio: Optional[torch.Tensor] = None,
               eye: Optional[float] = None, pose_index: Optional[int] = None) -> torch.Tensor:
        """(H, W, 3) :meth:`layers` over the pose's head background (the ground-truth torso on
        bc.jpg when the folder has torso_imgs/, else bc.jpg: RAD-NeRF's head-only evaluation)."""
        pose = index if pose_index is None else pose_index
        return over(self.layers(data, index, audio, eye, pose_index), data.head_background(pose))

    def views(self, data: TalkingHeadDataset, index: int) -> Dict[str, torch.Tensor]:
        """What evaluation scores for item ``index``: ``{"frame": render}`` (the video frame)."""
        return {"frame": self.render(data, index)}

    def validate(self, data: TalkingHeadDataset, count: int) -> float:
        """Mean PSNR over ``count`` evenly spread items of ``data``. Consumes no global random
        numbers (training continues identically with or without validation)."""
        picks = torch.linspace(0, len(data) - 1, min(count, len(data))).round().long().tolist()
        with torch.random.fork_rng(devices=[]):
            return sum(psnr(self.render(data, i), data.image(i).to(self.device)) for i in picks) / len(picks)


class HeadTorsoModel:
    """A head (frozen :class:`HeadModel`) with its torso stage's :class:`TorsoField`: frames are
    the head over the torso over bc.jpg (:func:`~pt3d_radnerf.models.composite_head_torso`), the
    torso rendered at every pixel with the frame's pose and latent code 0 (as at inference).

    Args:
        head: the fitted head.
        torso: a TorsoField (moved to the head's device).
    """

    def __init__(self, head: HeadModel, torso: TorsoField) -> None:
        self.head, self.torso, self.device = head, torso.to(head.device), head.device
        self.spec, self.config = head.spec, head.config
        self.steps, self.history = 0, []
        self._coords: Dict[Tuple[int, int], torch.Tensor] = {}

    def coords(self, height: int, width: int) -> torch.Tensor:
        """(H * W, 2) :func:`~pt3d_radnerf.data.bg_coords` on the device (cached per size)."""
        key = (int(height), int(width))
        if key not in self._coords:
            self._coords[key] = bg_coords(*key, device=self.device).reshape(-1, 2)
        return self._coords[key]

    @torch.no_grad()
    def torso_layers(self, data: TalkingHeadDataset, pose_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(straight colour (H, W, 3), alpha (H, W, 1)) of the torso at item ``pose_index``'s pose."""
        self.torso.eval()
        pose = data.torso_poses[pose_index : pose_index + 1].to(self.device)
        alpha, rgb = self.torso(self.coords(data.height, data.width), pose, None)
        return rgb[0].view(data.height, data.width, 3), alpha[0].view(data.height, data.width, 1)

    def compose(self, head_layers: Tuple[torch.Tensor, torch.Tensor], data: TalkingHeadDataset,
                pose_index: int) -> torch.Tensor:
        """(H, W, 3) head ``layers`` over the torso of item ``pose_index`` over bc.jpg, in [0, 1]."""
        torso_rgb, torso_alpha = self.torso_layers(data, pose_index)
        return composite_head_torso(*head_layers, torso_rgb, torso_alpha,
                                    data.background.to(self.device)).clamp(0.0, 1.0)

    def render(self, data: TalkingHeadDataset, index: int, audio: Optional[torch.Tensor] = None,
               eye: Optional[float] = None, pose_index: Optional[int] = None) -> torch.Tensor:
        """(H, W, 3) full frame of item ``index`` (arguments as :meth:`HeadModel.layers`)."""
        pose = index if pose_index is None else pose_index
        return self.compose(self.head.layers(data, index, audio, eye, pose_index), data, pose)

    def views(self, data: TalkingHeadDataset, index: int) -> Dict[str, torch.Tensor]:
        """From one head render: ``frame`` (head over torso over bc.jpg), ``head_on_bc`` (the head
        alone over bc.jpg) and, when the folder has torso images, ``head`` (over the ground-truth
        torso: RAD-NeRF's head-only number)."""
        layers = self.head.layers(data, index)
        out = {"frame": self.compose(layers, data, index), "head_on_bc": over(layers, data.background)}
        if data.has_torso:
            out["head"] = over(layers, data.torso_background(index))
        return out

    @classmethod
    def from_checkpoint(cls, path: str, device: Union[str, torch.device] = "cpu") -> "HeadTorsoModel":
        """The head and torso stored in a torso-stage checkpoint."""
        data = read_checkpoint(path)
        if data.get("stage", "head") != "torso":
            raise ValueError(f"checkpoint {path} is a head checkpoint, not a torso-stage checkpoint (torso_*.pth)")
        if "head" not in data or "torso_frames" not in data:
            raise CheckpointReadError(f"cannot read checkpoint {path}: it has no head or torso_frames entry")
        torso = TorsoField(num_frames=int(data["torso_frames"]))
        torso.load_state_dict(data["model"], strict=True)
        model = cls(HeadModel.from_state(data["head"], path, device), torso)
        model.steps = int(data.get("progress", {}).get("step", 0))
        model.history = list(data.get("progress", {}).get("history", []))
        return model


def load_model(path: str, device: Union[str, torch.device] = "cpu") -> Union[HeadModel, HeadTorsoModel]:
    """The model of a head (``model_*.pth``) or torso-stage (``torso_*.pth``) checkpoint."""
    stage = read_checkpoint(path).get("stage", "head")
    return HeadTorsoModel.from_checkpoint(path, device) if stage == "torso" else HeadModel.from_checkpoint(path, device)
