"""RAD-NeRF's training losses."""

import torch

from ..renderer.ray_bundle import exclusive_cumsum_per_ray


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


def distortion_loss(weights: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                    packed_info: torch.Tensor) -> torch.Tensor:
    """(R,) mip-NeRF 360's distortion of each ray's weights: ``sum_ij w_i w_j |m_i - m_j| +
    1/3 sum_i w_i^2 (t1_i - t0_i)`` over its samples (midpoints m), small when the weight sits
    in one short interval (a sharp surface), large when it is spread along the ray.

    Packed samples: ``weights``, ``t_starts``, ``t_ends`` (S,) in ray order, ``packed_info``
    (R, 2) of (start, count) with each ray's samples contiguous, starts ascending. The pair sum
    in O(S): sample i meets the earlier samples of its ray through their running sums of w and
    w m, taken in float64 (differences of prefix sums over the whole batch); the per-ray sum is
    a segment reduction (deterministic forward and backward).
    """
    w, mid = weights.double(), (0.5 * (t_starts + t_ends)).double()
    before_w = exclusive_cumsum_per_ray(w, packed_info)  # over the ray's earlier samples
    before_wm = exclusive_cumsum_per_ray(w * mid, packed_info)
    pairs = 2.0 * w * (mid * before_w - before_wm)  # i > j terms, both orders
    per_sample = pairs + w * w * (t_ends - t_starts).double() / 3.0
    return torch.segment_reduce(per_sample, "sum", lengths=packed_info[:, 1], unsafe=True).to(weights.dtype)


def weights_from_sigma(sigma: torch.Tensor, deltas: torch.Tensor, packed_info: torch.Tensor) -> torch.Tensor:
    """(S,) differentiable compositing weights ``T_i (1 - exp(-sigma_i delta_i))`` with
    ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` over each ray's earlier samples (packed as for
    :func:`distortion_loss`; no early stop). The raymarcher's weights are detached: losses on
    the weights themselves need these."""
    optical = (sigma * deltas).double()
    before = exclusive_cumsum_per_ray(optical, packed_info)
    return (torch.exp(-before) * -torch.expm1(-optical)).to(sigma.dtype)
