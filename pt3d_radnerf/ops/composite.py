"""Emission-absorption compositing of packed or dense samples (one autograd Function).

Math and gradient derivation: csrc/composite/composite_math.h. Deterministic: one sequential loop per
ray on CPU and CUDA, no atomics.
"""

import math
from typing import Optional, Tuple

import torch

from .._backend import load_extension

PYTORCH3D_EPS = 1e-10  # EmissionAbsorptionRaymarcher's transmittance epsilon


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, deltas, features, ts, packed_info, sigma_mode, t_thresh, eps):
        feats, opacity, depth, weights = load_extension().composite_forward(
            values, deltas, features, ts, packed_info, sigma_mode, t_thresh, eps
        )
        ctx.save_for_backward(values, deltas, features, ts, packed_info)
        ctx.args = (sigma_mode, t_thresh, eps)
        ctx.mark_non_differentiable(weights)
        return feats, opacity, depth, weights

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_feats, grad_opacity, grad_depth, _grad_weights):
        values, deltas, features, ts, packed_info = ctx.saved_tensors
        sigma_mode, t_thresh, eps = ctx.args
        g_values, g_deltas, g_features = load_extension().composite_backward(
            grad_feats.contiguous(), grad_opacity.contiguous(), grad_depth.contiguous(),
            values, deltas, features, ts, packed_info, sigma_mode, t_thresh, eps,
        )
        return g_values, (g_deltas if sigma_mode else None), g_features, None, None, None, None, None


def composite(
    values: torch.Tensor,
    features: torch.Tensor,
    packed_info: torch.Tensor,
    ts: Optional[torch.Tensor] = None,
    deltas: Optional[torch.Tensor] = None,
    mode: str = "alpha",
    t_thresh: float = 0.0,
    eps: float = PYTORCH3D_EPS,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composites packed samples front to back.

    Args:
        values: (S,) per-sample opacities in [0, 1] (``mode="alpha"``, PyTorch3D's convention) or
            densities sigma >= 0 (``mode="sigma"``, with ``deltas``).
        features: (S, C) per-sample features (e.g. RGB).
        packed_info: (R, 2) int64 ``(start, count)`` of each ray's contiguous samples.
        ts: (S,) sample depths for the expected depth (zeros if None).
        deltas: (S,) interval lengths, required in sigma mode (alpha = 1 - exp(-sigma delta)).
        t_thresh: stop a ray once its transmittance drops below this (0 disables).
        eps: transmittance factor ``1 + eps - alpha`` (PyTorch3D's 1e-10 by default).

    Returns:
        features (R, C), opacity (R,), depth (R,) (= sum w t, not normalised), weights (S,).
        Differentiable w.r.t. values, deltas and features (not ts); weights carry no gradient.
    """
    if mode not in ("alpha", "sigma"):
        raise ValueError(f"mode must be 'alpha' or 'sigma', got {mode!r}")
    sigma_mode = mode == "sigma"
    if sigma_mode and deltas is None:
        raise ValueError("deltas are required in sigma mode")
    if features.dim() != 2:
        raise ValueError(f"features must be (S, C), got {tuple(features.shape)}")
    dtype = torch.promote_types(values.dtype, features.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    values = values.reshape(-1).to(dtype).contiguous()
    features = features.to(dtype).contiguous()
    ts = torch.zeros_like(values) if ts is None else ts.reshape(-1).to(dtype).contiguous()
    deltas = deltas.reshape(-1).to(dtype).contiguous() if sigma_mode else values.new_empty(0)
    return _Composite.apply(values, deltas, features, ts, packed_info.to(torch.long).contiguous(),
                            sigma_mode, float(t_thresh), float(eps))


def dense_packed_info(n_rays: int, n_samples: int, device=None) -> torch.Tensor:
    """(R, 2) packed_info of R rays with P samples each, stored densely (ray r at r * P)."""
    starts = torch.arange(n_rays, device=device, dtype=torch.long) * n_samples
    return torch.stack([starts, torch.full_like(starts, n_samples)], -1)


def composite_dense(values: torch.Tensor, features: torch.Tensor, ts: Optional[torch.Tensor] = None,
                    deltas: Optional[torch.Tensor] = None, mode: str = "alpha", t_thresh: float = 0.0,
                    eps: float = PYTORCH3D_EPS):
    """:func:`composite` for dense samples: values (..., P), features (..., P, C), ts/deltas (..., P).

    Returns features (..., C), opacity (...), depth (...), weights (..., P).
    """
    batch, p = values.shape[:-1], values.shape[-1]
    if features.shape[:-1] != values.shape:
        raise ValueError(f"features {tuple(features.shape)} must be values.shape + (C,) = {tuple(values.shape)} + (C,)")
    r = math.prod(batch)
    c = features.shape[-1]
    info = dense_packed_info(r, p, values.device)
    feats, opacity, depth, weights = composite(
        values.reshape(-1), features.reshape(-1, c), info,
        None if ts is None else ts.reshape(-1), None if deltas is None else deltas.reshape(-1),
        mode, t_thresh, eps,
    )
    return feats.view(*batch, c), opacity.view(batch), depth.view(batch), weights.view(*batch, p)
