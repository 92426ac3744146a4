"""What a fit is made of: the training hyper-parameters (:class:`FitConfig`) and the field's
constructor arguments (:class:`ModelSpec`), both frozen dataclasses stored in every checkpoint.

The example CLI generates one flag per :class:`FitConfig` field (``rays_per_camera`` ->
``--rays-per-camera``, help from the field's metadata) with :func:`add_config_arguments`.
"""

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union, get_args, get_origin, get_type_hints

import torch

from ..models import AudioRadianceField
from ..models.radiance_field import RADNERF_AABB


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FitConfig:
    """Training hyper-parameters (defaults: the CPU run of ``make run`` on the synthetic head)."""

    iters: int = _opt(1000, "training steps")
    cameras_per_step: int = _opt(4, "training frames per step")
    rays_per_camera: int = _opt(1024, "pixels drawn per frame and step")
    face_ray_weight: float = _opt(4.0, "lower-face pixels are drawn this many times more often")
    lr: float = _opt(5e-3, "learning rate of the hash grids")
    lr_net: float = _opt(5e-4, "learning rate of the MLPs (attention: 5x)")
    lr_decay: float = _opt(0.1, "every learning rate decays exponentially to this factor over the run")
    entropy_weight: float = _opt(1e-4, "weight of the opacity entropy loss")
    distortion_weight: float = _opt(0.01, "weight of mip-NeRF 360's distortion loss (concentrates each ray's "
                                           "weights: the grid prunes more, fewer samples per frame)")
    random_background: bool = _opt(
        False, "with parsing/ maps: a random colour per ray behind head pixels and as background and target of "
               "pure-background pixels (pushes the head to opacity; no effect without parsing/; see README)")
    ambient_weight: float = _opt(0.1, "weight of the ambient loss outside the lower face")
    ambient_ramp_iters: int = _opt(500, "steps over which the ambient weight ramps up linearly")
    t_thresh: float = _opt(1e-4, "a ray stops when its transmittance falls below this")
    max_samples_per_ray: Optional[int] = _opt(16, "cap of occupied samples per training ray (none: no cap)")
    step_size: float = _opt(2 * math.sqrt(3) / 128, "metric ray-marching step (RAD-NeRF: 2 sqrt(3) / 128)")
    grid_resolution: int = _opt(64, "occupancy-grid cells per axis (a power of two)")
    occupancy_warmup: int = _opt(128, "steps during which every occupancy cell is re-evaluated")
    occupancy_decay: float = _opt(0.8, "occupancy value decay per update")
    density_thresh: float = _opt(10.0, "a cell is occupied while its sigma exceeds min(grid mean, this)")
    occupancy_update_every: int = _opt(16, "steps between occupancy-grid updates")
    unseen_cameras: int = _opt(8, "training cameras used to mark cells no camera sees")
    checkpoint_every: Optional[int] = _opt(None, "steps between checkpoints (none: iters / 10, at most 250)")
    validate_every: int = _opt(250, "steps between validation renders (0: never)")
    validate_frames: int = _opt(4, "held-out frames rendered per validation")
    seed: int = _opt(0, "seed of the model initialisation and of every training draw")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and _is_optional(f.name):
                continue
            kind = _base_type(f.name)
            if kind is bool and not isinstance(value, bool):
                raise TypeError(f"FitConfig.{f.name} must be a bool, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"FitConfig.{f.name} must be an int, got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
                raise TypeError(f"FitConfig.{f.name} must be a finite number, got {value!r}")
        positive = ("iters", "cameras_per_step", "rays_per_camera", "lr", "lr_net", "step_size",
                    "occupancy_update_every", "unseen_cameras", "validate_frames", "face_ray_weight")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("entropy_weight", "distortion_weight", "ambient_weight", "ambient_ramp_iters", "t_thresh",
                     "occupancy_warmup", "density_thresh", "validate_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_samples_per_ray", "checkpoint_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {getattr(self, name)}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0.0 <= self.occupancy_decay <= 1.0:
            raise ValueError(f"occupancy_decay must be in [0, 1], got {self.occupancy_decay}")
        res = self.grid_resolution
        if res < 2 or res > 1024 or res & (res - 1):
            raise ValueError(f"grid_resolution must be a power of two in [2, 1024], got {res}")

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints: ``checkpoint_every``, or iters / 10 (at least 1, at most
        250) so that short runs checkpoint too."""
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        return min(250, max(1, self.iters // 10))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "FitConfig":
        """The config of a stored dict; fields it predates take the value that reproduces what
        the version that wrote it did (:data:`LEGACY_VALUES`)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{source} has unknown FitConfig fields {unknown}")
        return cls(**with_legacy_values(values))


# Fields that do not change what is trained: they may differ on resume (the change is recorded).
OPERATIONAL_FIELDS = ("checkpoint_every", "validate_every", "validate_frames")

# Fields added after checkpoints were first written, with the value that means "what earlier
# versions did" (a later default may differ).
LEGACY_VALUES = {"random_background": False, "distortion_weight": 0.0}


def with_legacy_values(stored: Mapping[str, Any]) -> Dict[str, Any]:
    """``stored`` (a FitConfig dict) with the fields it predates set to their :data:`LEGACY_VALUES`."""
    return {**{k: v for k, v in LEGACY_VALUES.items() if k not in stored}, **stored}


def config_changes(stored: Mapping[str, Any], config: FitConfig) -> Dict[str, Tuple[Any, Any]]:
    """``{field: (stored value, new value)}`` for every FitConfig field that differs (a field the
    stored config predates counts with its legacy value)."""
    stored = with_legacy_values(stored)
    new = config.to_dict()
    return {k: (stored.get(k), v) for k, v in new.items() if stored.get(k) != v}


@dataclass(frozen=True)
class ModelSpec:
    """Every constructor argument of :class:`AudioRadianceField` (audio_type as its window and
    width): what a checkpoint needs to rebuild its field. Plain types only."""

    audio_window: int
    audio_width: int
    num_frames: int
    aabb: Tuple[float, ...] = tuple(RADNERF_AABB)
    bound: float = 1.0
    use_attention: bool = True
    dim_aud: int = 64
    ind_dim: int = 4
    hidden: int = 64
    geo_feat_dim: int = 64
    default_eye: float = 0.25
    log2_hashmap_size: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "aabb", tuple(float(v) for v in self.aabb))
        if len(self.aabb) != 6:
            raise ValueError(f"ModelSpec.aabb must have 6 values, got {self.aabb}")

    @classmethod
    def for_dataset(cls, features: torch.Tensor, num_frames: int) -> "ModelSpec":
        """Spec for training audio ``features`` (N, W, C) and ``num_frames`` latent codes."""
        _, window, width = features.shape
        return cls(audio_window=int(window), audio_width=int(width), num_frames=int(num_frames))

    def to_dict(self) -> Dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "checkpoint") -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{source} has a model spec with unknown fields {unknown} (made by another "
                             f"version of pt3d_radnerf?); known: {sorted(names)}")
        return cls(**values)

    def build(self) -> AudioRadianceField:
        args = dataclasses.asdict(self)
        audio_type = (args.pop("audio_window"), args.pop("audio_width"))
        return AudioRadianceField(audio_type=audio_type, **args)


def check_audio_compatible(spec: ModelSpec, features: torch.Tensor, what: str) -> None:
    """Clear error when audio features (N, W, C) do not fit a model's audio window and width."""
    if features.dim() != 3:
        raise ValueError(f"{what} must be (N, W, C) audio windows, got shape {tuple(features.shape)}")
    _, window, width = features.shape
    if (window, width) != (spec.audio_window, spec.audio_width):
        raise ValueError(
            f"{what} has audio windows of {window} x {width} features, but the model is built for "
            f"{spec.audio_window} x {spec.audio_width}: use the same audio feature type "
            f"(e.g. logmel 16 x 80, deepspeech 16 x 29, esperanto 16 x 44) as the training audio"
        )


# ---- command line -------------------------------------------------------------------------------
def _hint(name: str):
    return get_type_hints(FitConfig)[name]


def _is_optional(name: str) -> bool:
    hint = _hint(name)
    return get_origin(hint) is Union and type(None) in get_args(hint)


def _base_type(name: str) -> type:
    hint = _hint(name)
    if _is_optional(name):
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint


def _parser_for(name: str):
    kind, optional = _base_type(name), _is_optional(name)

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        if kind is bool:
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an int' if kind is int else 'a number'}{' or none' if optional else ''}, "
                f"got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--dashed-name`` option per FitConfig field. A flag not given leaves no attribute
    (argparse.SUPPRESS): :func:`config_from_args` tells given values from defaults."""
    group = parser.add_argument_group("training (FitConfig)")
    for f in dataclasses.fields(FitConfig):
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_parser_for(f.name),
                           default=argparse.SUPPRESS, metavar=_base_type(f.name).__name__.upper(),
                           help=f"{f.metadata['help']} (default: {f.default})")


def config_from_args(args: argparse.Namespace, stored: Optional[Mapping[str, Any]] = None) -> FitConfig:
    """The FitConfig of parsed arguments: the flags given, and for the others ``stored``'s values
    (a checkpoint's config, on --resume: a default changed by a later version does not stop a run
    from continuing) or, without it, the defaults. Raises ValueError/TypeError naming a bad field."""
    values = FitConfig().to_dict() if stored is None else FitConfig.from_dict(stored, "the checkpoint's config").to_dict()
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig) if hasattr(args, f.name)})
    return FitConfig(**values)
