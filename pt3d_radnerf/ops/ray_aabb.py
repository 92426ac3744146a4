"""Ray / axis-aligned box intersection (slab test), differentiable w.r.t. the rays."""

from typing import Sequence, Tuple, Union

import torch

from .._backend import load_extension

AabbLike = Union[torch.Tensor, Sequence[float]]


def as_aabb(aabb: AabbLike, like: torch.Tensor) -> torch.Tensor:
    """Returns the box as a contiguous (6,) tensor ``(xmin, ymin, zmin, xmax, ymax, zmax)``
    with the dtype and device of ``like``.

    Raises:
        ValueError: wrong length, non-finite values, or min > max on some axis.
    """
    box = torch.as_tensor(aabb, dtype=like.dtype, device=like.device).reshape(-1)
    if box.numel() != 6:
        raise ValueError(f"aabb must have 6 values (xmin, ymin, zmin, xmax, ymax, zmax), got {box.numel()}")
    if not bool(torch.isfinite(box).all()):
        raise ValueError(f"aabb must be finite, got {box.tolist()}")
    if bool((box[:3] > box[3:]).any()):
        raise ValueError(f"aabb needs min <= max on every axis, got {box.tolist()}")
    return box.contiguous()


class _NearFarFromAabb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rays_o, rays_d, aabb, min_near):
        near, far, hit = load_extension().near_far_from_aabb(rays_o, rays_d, aabb, min_near)
        ctx.save_for_backward(rays_o, rays_d, aabb)
        ctx.min_near = min_near
        ctx.mark_non_differentiable(hit)
        return near, far, hit

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_near, grad_far, _grad_hit):
        rays_o, rays_d, aabb = ctx.saved_tensors
        if grad_near is None:
            grad_near = torch.zeros_like(rays_o[:, 0])
        if grad_far is None:
            grad_far = torch.zeros_like(rays_o[:, 0])
        grad_o, grad_d = load_extension().near_far_from_aabb_backward(
            grad_near.contiguous(), grad_far.contiguous(), rays_o, rays_d, aabb, ctx.min_near
        )
        return grad_o, grad_d, None, None


def near_far_from_aabb(
    rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: AabbLike, min_near: float = 0.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each ray ``o + t d`` enters and leaves an axis-aligned box.

    Args:
        rays_o: (..., 3) origins, float32 or float64.
        rays_d: (..., 3) directions (need not be unit length; ``t`` is in units of ``|d|``).
        aabb: (6,) box ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        min_near: the entry is clamped to at least this ``t``.

    Returns:
        near, far: (...) entry and exit ``t``; for a miss both equal ``min_near``.
        hit: (...) bool, False where the ray misses the box (or the box lies behind
            ``min_near``, or the ray has a non-finite value or a zero direction).

    Differentiable w.r.t. ``rays_o`` and ``rays_d`` (no gradient through misses or through
    the ``min_near`` clamp).
    """
    if not isinstance(rays_o, torch.Tensor) or not isinstance(rays_d, torch.Tensor):
        raise TypeError("rays_o and rays_d must be torch.Tensor")
    if rays_o.shape[-1:] != (3,) or rays_o.shape != rays_d.shape:
        raise ValueError(
            f"rays_o and rays_d must both have shape (..., 3), got {tuple(rays_o.shape)} and "
            f"{tuple(rays_d.shape)}"
        )
    batch_shape = rays_o.shape[:-1]
    box = as_aabb(aabb, rays_o)
    near, far, hit = _NearFarFromAabb.apply(
        rays_o.reshape(-1, 3).contiguous(), rays_d.reshape(-1, 3).contiguous(), box, float(min_near)
    )
    return near.view(batch_shape), far.view(batch_shape), hit.view(batch_shape)
