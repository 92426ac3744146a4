"""Input encoders of the RAD-NeRF field: multiresolution grid and spherical harmonics."""

import math
from typing import Optional

import torch
from torch import nn

from ..ops.encoding import GRID_TYPES, INTERPOLATIONS, grid_encode, grid_level_layout, sh_encode


class HashGridEncoder(nn.Module):
    """Multiresolution hash / tiled grid (instant-ngp), differentiable w.r.t. table and points.

    Args:
        input_dim: 2 or 3.
        num_levels, level_dim: L levels of C in {1, 2, 4, 8} features -> ``output_dim = L * C``.
        base_resolution: resolution of the coarsest level.
        log2_hashmap_size: at most ``2**log2_hashmap_size`` table rows per level.
        desired_resolution: finest resolution; when given, overrides ``per_level_scale`` with
            ``2 ** (log2(desired / base) / (L - 1))`` (RAD-NeRF: ``2048 * bound``).
        per_level_scale: resolution growth factor between levels.
        gridtype: "hash" or "tiled"; interpolation: "linear" or "smoothstep".
        align_corners: grid vertices on the domain corners (no half-cell shift).
        bound: points live in ``[-bound, bound]^D``; outside it they get zero features.
        check_nan: raise ValueError on NaN points (costs one reduction, a sync on CUDA).

    Shapes: forward(x (..., D)) -> (..., L * C), in the table's dtype.
    The table ``embeddings`` (rows, C) is initialised U(-1e-4, 1e-4) as in instant-ngp.
    """

    def __init__(
        self,
        input_dim: int = 3,
        num_levels: int = 16,
        level_dim: int = 2,
        base_resolution: int = 16,
        log2_hashmap_size: int = 16,
        desired_resolution: Optional[float] = None,
        per_level_scale: float = 2.0,
        gridtype: str = "hash",
        interpolation: str = "linear",
        align_corners: bool = False,
        bound: float = 1.0,
        check_nan: bool = True,
    ):
        super().__init__()
        if input_dim not in (2, 3):
            raise ValueError(f"input_dim must be 2 or 3, got {input_dim}")
        if level_dim not in (1, 2, 4, 8):
            raise ValueError(f"level_dim must be 1, 2, 4 or 8, got {level_dim}")
        if not 1 <= num_levels <= 32:
            raise ValueError(f"num_levels must be in [1, 32], got {num_levels}")
        if gridtype not in GRID_TYPES:
            raise ValueError(f"gridtype must be one of {GRID_TYPES}, got {gridtype!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        if desired_resolution is not None:
            per_level_scale = (
                2 ** (math.log2(desired_resolution / base_resolution) / (num_levels - 1))
                if num_levels > 1 else 1.0
            )
        self.input_dim, self.num_levels, self.level_dim = input_dim, num_levels, level_dim
        self.base_resolution, self.log2_hashmap_size = base_resolution, log2_hashmap_size
        self.per_level_scale = float(per_level_scale)
        self.gridtype, self.interpolation = gridtype, interpolation
        self.align_corners, self.bound, self.check_nan = bool(align_corners), float(bound), check_nan
        self.output_dim = num_levels * level_dim
        self.offsets, self.scales = grid_level_layout(
            input_dim, num_levels, base_resolution, self.per_level_scale, log2_hashmap_size,
            self.align_corners,
        )
        self.embeddings = nn.Parameter(torch.empty(self.offsets[-1], level_dim).uniform_(-1e-4, 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must have shape (..., {self.input_dim}), got {tuple(x.shape)}")
        emb = self.embeddings
        dtype = torch.float32 if emb.dtype == torch.float16 else emb.dtype
        flat = x.reshape(-1, self.input_dim).to(dtype)
        out = grid_encode(flat, emb, self.offsets, self.scales, self.gridtype, self.align_corners,
                          self.interpolation, self.bound, self.check_nan)
        return out.view(*x.shape[:-1], self.output_dim)

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, num_levels={self.num_levels}, level_dim={self.level_dim}, "
            f"base_resolution={self.base_resolution}, per_level_scale={self.per_level_scale:.4f}, "
            f"log2_hashmap_size={self.log2_hashmap_size}, params={tuple(self.embeddings.shape)}, "
            f"gridtype={self.gridtype}, interpolation={self.interpolation}, "
            f"align_corners={self.align_corners}, bound={self.bound}"
        )


class SHEncoder(nn.Module):
    """Real spherical-harmonics direction encoding (RAD-NeRF: degree 4 -> 16 dims).

    forward(dirs (..., 3) unit vectors) -> (..., degree**2); differentiable w.r.t. dirs.
    """

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 8:
            raise ValueError(f"degree must be in [1, 8], got {degree}")
        self.degree = degree
        self.output_dim = degree**2

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        if not isinstance(dirs, torch.Tensor):
            raise TypeError(f"dirs must be a torch.Tensor, got {type(dirs).__name__}")
        if dirs.dim() < 1 or dirs.shape[-1] != 3:
            raise ValueError(f"dirs must have shape (..., 3), got {tuple(dirs.shape)}")
        dtype = dirs.dtype if dirs.dtype in (torch.float32, torch.float64) else torch.float32
        out = sh_encode(dirs.reshape(-1, 3).to(dtype), self.degree)
        return out.view(*dirs.shape[:-1], self.output_dim)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, output_dim={self.output_dim}"
