"""RAD-NeRF's training losses."""

import torch


def opacity_entropy(opacity: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean binary entropy (bits) of per-ray opacities: pushes each ray to empty or solid."""
    a = opacity.clamp(eps, 1.0 - eps)
    return (-(a * torch.log2(a) + (1 - a) * torch.log2(1 - a))).mean()


def ambient_loss(ambient_per_ray: torch.Tensor, inside_face: torch.Tensor) -> torch.Tensor:
    """Mean per-ray ambient magnitude over rays OUTSIDE the lower-face rectangle (audio should
    only move the mouth region). ``ambient_per_ray`` (R,), ``inside_face`` (R,) bool."""
    outside = (~inside_face).to(ambient_per_ray.dtype)
    return (ambient_per_ray * outside).mean()


def ramp(step: int, total: int) -> float:
    """RAD-NeRF's linear warm-up of the ambient loss weight: min(step / total, 1)."""
    return min(step / max(total, 1), 1.0)
