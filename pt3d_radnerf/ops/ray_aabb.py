"""Ray / axis-aligned box intersection (slab test), differentiable w.r.t. the rays."""

from typing import Sequence, Tuple, Union

import torch

from .._backend import custom_ops

AabbLike = Union[torch.Tensor, Sequence[float]]
_ops = custom_ops()


def as_aabb(aabb: AabbLike, like: torch.Tensor) -> torch.Tensor:
    """The box as a contiguous (6,) CPU tensor ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in the
    dtype of ``like``: the kernels read these six values on the host (never waiting for a device),
    and validate them (6 finite values, min <= max). A CUDA ``aabb`` costs one small copy per call;
    keep boxes as tuples or CPU tensors."""
    return torch.as_tensor(aabb, dtype=like.dtype).reshape(-1).to("cpu").contiguous()


@torch.library.register_fake("pt3d_radnerf::near_far_from_aabb")
def _near_far_fake(rays_o, rays_d, aabb, min_near):
    n = rays_o.shape[0]
    return rays_o.new_empty(n), rays_o.new_empty(n), rays_o.new_empty(n, dtype=torch.bool)


@torch.library.register_fake("pt3d_radnerf::near_far_from_aabb_backward")
def _near_far_backward_fake(grad_near, grad_far, rays_o, rays_d, aabb, min_near):
    return torch.empty_like(rays_o), torch.empty_like(rays_d)


def _near_far_setup(ctx, inputs, output):
    rays_o, rays_d, aabb, min_near = inputs
    ctx.save_for_backward(rays_o, rays_d, aabb)
    ctx.min_near = min_near
    ctx.mark_non_differentiable(output[2])


def _near_far_backward(ctx, grad_near, grad_far, _grad_hit):
    rays_o, rays_d, aabb = ctx.saved_tensors
    zeros = rays_o.new_zeros(rays_o.shape[0])
    grad_o, grad_d = _ops.near_far_from_aabb_backward(
        zeros if grad_near is None else grad_near.contiguous(),
        zeros if grad_far is None else grad_far.contiguous(), rays_o, rays_d, aabb, ctx.min_near,
    )
    return grad_o, grad_d, None, None


torch.library.register_autograd("pt3d_radnerf::near_far_from_aabb", _near_far_backward,
                                setup_context=_near_far_setup)


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
    near, far, hit = _ops.near_far_from_aabb(
        rays_o.reshape(-1, 3).contiguous(), rays_d.reshape(-1, 3).contiguous(), as_aabb(aabb, rays_o),
        float(min_near),
    )
    return near.view(batch_shape), far.view(batch_shape), hit.view(batch_shape)
