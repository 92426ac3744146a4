"""TorsoField: RAD-NeRF's pseudo-3-D deformable torso, a 2-D image field conditioned on the head pose.

For a pixel coordinate x in [-1, 1]^2 (``pt3d_radnerf.data.bg_coords``: [row, col]), the frame's
pose vector p (6: XYZ Euler angles + translation, ``pt3d_radnerf.data.convert_poses``) and its
latent code c:

    x     = shrink * x                                        shrink 0.8: room for the deformation
    h     = [Freq10(x), Freq4(p), c]                          (42 + 54 + 8)
    x'    = clamp(x + deform_net(h), -1, 1)                   (2)    pose-dependent 2-D warp
    out   = torso_net([HashGrid2D(x'), h])                    (32 + 104 -> 4)
    alpha = sigmoid(out[0]);  rgb = sigmoid(out[1:4])

The warp is trained only through the grid's input gradient (the offset has no activation).
The torso stage renders ``alpha``/``rgb`` over ``bc.jpg`` and the head over that
(:func:`composite_head_torso`), with the head field frozen.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import HashGridEncoder
from .radiance_field import _finite_float, _positive_int, mlp

POSE_DIM = 6


class FrequencyEncoder(nn.Module):
    """NeRF positional encoding ``[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(F-1) x), cos(2^(F-1) x)]``
    (each term over all D inputs; frequencies 2^k without pi, as RAD-NeRF's freqencoder).

    forward(x (..., D)) -> (..., D * (1 + 2 F)); differentiable w.r.t. x.
    """

    def __init__(self, input_dim: int, num_freqs: int):
        super().__init__()
        self.input_dim = _positive_int("input_dim", input_dim)
        self.num_freqs = _positive_int("num_freqs", num_freqs)
        self.output_dim = self.input_dim * (1 + 2 * self.num_freqs)
        self.register_buffer("freqs", 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"x must have shape (..., {self.input_dim}), got {tuple(x.shape)}")
        scaled = x[..., None, :] * self.freqs.to(x.dtype)[:, None]  # (..., F, D)
        waves = torch.stack([torch.sin(scaled), torch.cos(scaled)], -2)  # (..., F, 2, D)
        return torch.cat([x, waves.flatten(-3)], -1)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, num_freqs={self.num_freqs}, output_dim={self.output_dim}"


class TorsoField(nn.Module):
    """RAD-NeRF's torso network (see module docstring).

    Args (plain Python values, validated here):
        num_frames: number of per-frame latent codes (training frames), >= 1.
        ind_dim: latent code size (RAD-NeRF: 8).
        shrink: coordinate scale before the warp, in (0, 1] (RAD-NeRF: 0.8).
        coord_freqs, pose_freqs: frequencies of the coordinate (10) and pose (4) encodings.
        deform_hidden, hidden: widths of deform_net (64) and torso_net (32).
        num_levels, log2_hashmap_size, base_resolution, desired_resolution: the 2-D tiled grid
            (16 levels x 2 features, 2^16 rows, 16 -> 2048).

    Parameter groups: ``param_groups(lr, lr_net)`` -> the grid at ``lr``, MLPs and codes at ``lr_net``.
    """

    def __init__(self, num_frames: int = 10000, ind_dim: int = 8, shrink: float = 0.8, coord_freqs: int = 10,
                 pose_freqs: int = 4, deform_hidden: int = 64, hidden: int = 32, num_levels: int = 16,
                 log2_hashmap_size: int = 16, base_resolution: int = 16, desired_resolution: int = 2048):
        super().__init__()
        self.num_frames = _positive_int("num_frames", num_frames)
        ind_dim = _positive_int("ind_dim", ind_dim)
        self.shrink = _finite_float("shrink", shrink)
        if not 0.0 < self.shrink <= 1.0:
            raise ValueError(f"shrink must be in (0, 1], got {shrink!r}")
        base_resolution = _positive_int("base_resolution", base_resolution, 2)
        desired_resolution = _positive_int("desired_resolution", desired_resolution, base_resolution)
        self.coord_encoder = FrequencyEncoder(2, coord_freqs)
        self.pose_encoder = FrequencyEncoder(POSE_DIM, pose_freqs)
        cond_dim = self.coord_encoder.output_dim + self.pose_encoder.output_dim + ind_dim
        self.deform_net = mlp(cond_dim, _positive_int("deform_hidden", deform_hidden), 2, 3)
        self.encoder = HashGridEncoder(
            input_dim=2, num_levels=_positive_int("num_levels", num_levels, 1, 32), level_dim=2,
            base_resolution=base_resolution, desired_resolution=desired_resolution,
            log2_hashmap_size=_positive_int("log2_hashmap_size", log2_hashmap_size, 4, 24),
            gridtype="tiled", bound=1.0)
        self.torso_net = mlp(self.encoder.output_dim + cond_dim, _positive_int("hidden", hidden), 4, 3)
        self.individual_codes = nn.Parameter(torch.randn(self.num_frames, ind_dim) * 0.1)

    def param_groups(self, lr: float = 5e-3, lr_net: float = 5e-4) -> List[Dict]:
        """Optimizer groups as RAD-NeRF's torso stage: the grid at ``lr``, everything else at ``lr_net``."""
        grids = list(self.encoder.parameters())
        taken = {id(p) for p in grids}
        nets = [p for p in self.parameters() if id(p) not in taken]
        return [{"name": "grids", "params": grids, "lr": lr}, {"name": "nets", "params": nets, "lr": lr_net}]

    # ---- inputs -----------------------------------------------------------------------------------
    def _inputs(self, coords, poses, frame_index) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked (B, N, 2) coords, (B, 6) poses and (B,) code indices (None -> code 0)."""
        for name, value in (("coords", coords), ("poses", poses)):
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                                f"{getattr(value, 'dtype', type(value).__name__)}")
        if poses.dim() != 2 or poses.shape[1] != POSE_DIM:
            raise ValueError(f"poses must be (B, {POSE_DIM}) (convert_poses: Euler XYZ + translation), "
                             f"got {tuple(poses.shape)}")
        batch = poses.shape[0]
        if coords.dim() == 2 and coords.shape[1] == 2:
            coords = coords[None].expand(batch, -1, -1)  # the same pixels for every pose
        if coords.dim() != 3 or coords.shape[0] != batch or coords.shape[2] != 2:
            raise ValueError(f"coords must be (N, 2) or (B, N, 2) with B = {batch} (the poses' batch), "
                             f"got {tuple(coords.shape)}")
        if frame_index is None:
            frame_index = torch.zeros(batch, dtype=torch.long, device=poses.device)
        if not isinstance(frame_index, torch.Tensor) or frame_index.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"frame_index must be an integer torch.Tensor (B,) or None, got "
                            f"{getattr(frame_index, 'dtype', type(frame_index).__name__)}")
        if tuple(frame_index.shape) != (batch,):
            raise ValueError(f"frame_index must be (B,) = ({batch},), got {tuple(frame_index.shape)}")
        if frame_index.numel() and (int(frame_index.min()) < 0 or int(frame_index.max()) >= self.num_frames):
            raise ValueError(f"frame_index must lie in [0, {self.num_frames}), got {frame_index.tolist()}")
        return coords, poses, frame_index.long()

    # ---- the field --------------------------------------------------------------------------------
    def deform(self, coords: torch.Tensor, poses: torch.Tensor,
               frame_index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The pose-dependent warp: (deformed coords x' (B, N, 2) in [-1, 1], conditioning h (B, N, C)).

        Same arguments as :meth:`forward`.
        """
        coords, poses, frame_index = self._inputs(coords, poses, frame_index)
        x = coords.to(self.individual_codes.dtype) * self.shrink
        n = x.shape[1]
        # F.embedding: a fixed-order backward (bitwise reproducible training, see radiance_field).
        code = F.embedding(frame_index, self.individual_codes)  # (B, ind_dim)
        per_frame = torch.cat([self.pose_encoder(poses.to(x.dtype)), code], -1)  # (B, 54 + ind_dim)
        h = torch.cat([self.coord_encoder(x), per_frame[:, None].expand(-1, n, -1)], -1)
        warped = (x + self.deform_net(h)).clamp(-1.0, 1.0)
        return warped, h

    def forward(self, coords: torch.Tensor, poses: torch.Tensor,
                frame_index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Torso opacity and colour at pixel coordinates.

        Args:
            coords: (B, N, 2) or (N, 2) (the same pixels for every pose) in [-1, 1], [row, col]
                as ``bg_coords``.
            poses: (B, 6) pose vectors (``convert_poses`` of the frames' camera-to-world).
            frame_index: (B,) latent-code index per pose (None = code 0, as at inference).

        Returns:
            alpha (B, N, 1) and rgb (B, N, 3) (straight, not premultiplied), both in (0, 1).
        """
        warped, h = self.deform(coords, poses, frame_index)
        out = self.torso_net(torch.cat([self.encoder(warped), h], -1))
        return torch.sigmoid(out[..., :1]), torch.sigmoid(out[..., 1:])


def composite_head_torso(head_rgb: torch.Tensor, head_opacity: torch.Tensor, torso_rgb: torch.Tensor,
                         torso_alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """RAD-NeRF's final image: the head over the torso over the background.

    ``torso_bg = torso_rgb * torso_alpha + background * (1 - torso_alpha)``, then
    ``head_rgb + (1 - head_opacity) * torso_bg``.

    Args (broadcastable leading dimensions ...):
        head_rgb: (..., 3) the head's composited (premultiplied) colour, as a raymarcher returns.
        head_opacity: (..., 1) the head's accumulated opacity.
        torso_rgb: (..., 3) straight torso colour; torso_alpha: (..., 1) its opacity (TorsoField).
        background: (..., 3) ``bc.jpg`` at the same pixels.

    Returns:
        (..., 3).
    """
    for name, value, channels in (("head_rgb", head_rgb, 3), ("head_opacity", head_opacity, 1),
                                  ("torso_rgb", torso_rgb, 3), ("torso_alpha", torso_alpha, 1),
                                  ("background", background, 3)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() < 1 or value.shape[-1] != channels:
            raise ValueError(f"{name} must have shape (..., {channels}), got {tuple(value.shape)}")
    torso_over_bg = torso_rgb * torso_alpha + background * (1.0 - torso_alpha)
    return head_rgb + (1.0 - head_opacity) * torso_over_bg
