"""Emission-absorption compositing of packed or dense samples (op ``pt3d_radnerf::composite``).

Math and gradient derivation: csrc/composite/composite_math.h. Deterministic: one sequential loop per
ray on CPU and CUDA, no atomics.
"""

import math
from typing import NamedTuple, Optional

import torch

from .._backend import custom_ops

PYTORCH3D_EPS = 1e-10  # EmissionAbsorptionRaymarcher's transmittance epsilon
DENSITY_MODES = ("alpha", "sigma")
_ops = custom_ops()


class Composited(NamedTuple):
    """Result of :func:`composite` (R rays, S samples, C channels; dense: R -> batch shape)."""

    features: torch.Tensor  # (R, C) sum_i w_i f_i
    opacity: torch.Tensor  # (R,) sum_i w_i
    depth: torch.Tensor  # (R,) sum_i w_i t_i (not normalised)
    weights: torch.Tensor  # (S,) w_i = a_i T_i; 0 past a ray's stopping point; no gradient
    transmittance: torch.Tensor  # (R,) T after the ray's last composited sample


@torch.library.register_fake("pt3d_radnerf::composite")
def _composite_fake(values, deltas, features, ts, packed_info, transmittance, sigma_mode, t_thresh, eps):
    r, c = packed_info.shape[0], features.shape[1]
    return (features.new_empty(r, c), features.new_empty(r), features.new_empty(r),
            features.new_empty(values.shape[0]), features.new_empty(r))


@torch.library.register_fake("pt3d_radnerf::composite_backward")
def _composite_backward_fake(grad_features, grad_opacity, grad_depth, grad_transmittance, values, deltas,
                             features, ts, packed_info, transmittance, sigma_mode, t_thresh, eps):
    return (torch.empty_like(values), torch.empty_like(values) if sigma_mode else values.new_empty(0),
            torch.empty_like(features), torch.empty_like(transmittance))


def _composite_setup(ctx, inputs, output):
    values, deltas, features, ts, packed_info, transmittance, sigma_mode, t_thresh, eps = inputs
    ctx.save_for_backward(values, deltas, features, ts, packed_info, transmittance)
    ctx.args = (sigma_mode, t_thresh, eps)
    ctx.mark_non_differentiable(output[3])  # weights


def _composite_backward(ctx, grad_feats, grad_opacity, grad_depth, _grad_weights, grad_trans):
    values, deltas, features, ts, packed_info, transmittance = ctx.saved_tensors
    sigma_mode, t_thresh, eps = ctx.args
    r = packed_info.shape[0]

    def grad(g, *shape):  # unused outputs may come without a gradient
        return values.new_zeros(shape) if g is None else g.contiguous()

    g_values, g_deltas, g_features, g_trans = _ops.composite_backward(
        grad(grad_feats, r, features.shape[1]), grad(grad_opacity, r), grad(grad_depth, r),
        grad(grad_trans, r), values, deltas, features, ts, packed_info, transmittance, sigma_mode,
        t_thresh, eps,
    )
    return g_values, (g_deltas if sigma_mode else None), g_features, None, None, g_trans, None, None, None


torch.library.register_autograd("pt3d_radnerf::composite", _composite_backward, setup_context=_composite_setup)


def composite(
    values: torch.Tensor,
    features: torch.Tensor,
    packed_info: torch.Tensor,
    ts: Optional[torch.Tensor] = None,
    deltas: Optional[torch.Tensor] = None,
    density_mode: str = "alpha",
    t_thresh: float = 0.0,
    eps: float = PYTORCH3D_EPS,
    transmittance: Optional[torch.Tensor] = None,
) -> Composited:
    """Composites packed samples front to back.

    Each ray starts at its ``transmittance`` (default 1) and stops before its first sample whose
    transmittance is below ``t_thresh``. Compositing a ray's samples in consecutive calls, each
    passing the previous call's output ``transmittance``, gives the one-call weights, stopping
    point and final transmittance exactly; the features/opacity/depth of the calls add up to the
    one-call values (up to the rounding of that sum).

    Args:
        values: (S,) per-sample opacities in [0, 1] (``density_mode="alpha"``, PyTorch3D's
            convention) or densities sigma >= 0 (``density_mode="sigma"``, with ``deltas``).
        features: (S, C) per-sample features (e.g. RGB).
        packed_info: (R, 2) int64 ``(start, count)`` of each ray's contiguous samples; rows sorted
            and non-overlapping (``start[r] >= start[r-1] + count[r-1]``).
        ts: (S,) sample depths for the expected depth (zeros if None).
        deltas: (S,) interval lengths, required in sigma mode (alpha = 1 - exp(-sigma delta)).
        density_mode: "alpha" or "sigma".
        t_thresh: early-stop transmittance (0 disables).
        eps: transmittance factor ``1 + eps - alpha`` (PyTorch3D's 1e-10 by default).
        transmittance: (R,) each ray's initial transmittance (ones if None).

    Returns:
        :class:`Composited` (features (R, C), opacity (R,), depth (R,), weights (S,),
        transmittance (R,)). Differentiable w.r.t. values, deltas, features and the input
        transmittance (not ts); weights carry no gradient.
    """
    if density_mode not in DENSITY_MODES:
        raise ValueError(f"density_mode must be 'alpha' or 'sigma', got {density_mode!r}")
    sigma_mode = density_mode == "sigma"
    if sigma_mode and deltas is None:
        raise ValueError("deltas are required in density_mode='sigma'")
    dtype = torch.promote_types(values.dtype, features.dtype)
    if dtype not in (torch.float32, torch.float64) and not dtype.is_complex:  # complex: the kernel refuses it
        dtype = torch.float32  # integers, bools, float16/bfloat16
    values = values.reshape(-1).to(dtype).contiguous()
    features = features.to(dtype).contiguous()
    ts = torch.zeros_like(values) if ts is None else ts.reshape(-1).to(dtype).contiguous()
    deltas = deltas.reshape(-1).to(dtype).contiguous() if sigma_mode else values.new_empty(0)
    packed_info = packed_info.to(torch.long).contiguous()
    if transmittance is None:
        transmittance = values.new_ones(packed_info.shape[0] if packed_info.dim() == 2 else 0)
    else:
        transmittance = transmittance.reshape(-1).to(dtype).contiguous()
    return Composited(*_ops.composite(values, deltas, features, ts, packed_info, transmittance, sigma_mode,
                                      float(t_thresh), float(eps)))


def dense_packed_info(n_rays: int, n_samples: int, device=None) -> torch.Tensor:
    """(R, 2) packed_info of R rays with P samples each, stored densely (ray r at r * P)."""
    if n_rays < 0 or n_samples < 0:
        raise ValueError(f"n_rays and n_samples must be >= 0, got {n_rays} and {n_samples}")
    starts = torch.arange(n_rays, device=device, dtype=torch.long) * n_samples
    return torch.stack([starts, torch.full_like(starts, n_samples)], -1)


def composite_dense(values: torch.Tensor, features: torch.Tensor, ts: Optional[torch.Tensor] = None,
                    deltas: Optional[torch.Tensor] = None, density_mode: str = "alpha",
                    t_thresh: float = 0.0, eps: float = PYTORCH3D_EPS,
                    transmittance: Optional[torch.Tensor] = None) -> Composited:
    """:func:`composite` for dense samples: values (..., P), features (..., P, C), ts/deltas (..., P),
    transmittance (...).

    Returns :class:`Composited` with features (..., C), opacity (...), depth (...), weights (..., P),
    transmittance (...).
    """
    batch, p = values.shape[:-1], values.shape[-1]
    if features.shape[:-1] != values.shape:
        raise ValueError(f"features {tuple(features.shape)} must be values.shape + (C,) = {tuple(values.shape)} + (C,)")
    r = math.prod(batch)
    c = features.shape[-1]
    info = dense_packed_info(r, p, values.device)
    out = composite(
        values.reshape(-1), features.reshape(-1, c), info,
        None if ts is None else ts.reshape(-1), None if deltas is None else deltas.reshape(-1),
        density_mode, t_thresh, eps, None if transmittance is None else transmittance.reshape(-1),
    )
    return Composited(out.features.view(*batch, c), out.opacity.view(batch), out.depth.view(batch),
                      out.weights.view(*batch, p), out.transmittance.view(batch))
