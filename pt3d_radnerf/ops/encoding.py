"""Input encodings: multiresolution grid (instant-ngp / RAD-NeRF layout) and spherical harmonics.

Both are differentiable w.r.t. their inputs (RAD-NeRF's audio reaches the density only through
the input gradient of a 2-D grid lookup); the grid is differentiable w.r.t. its table too.
First-order only (no double backward).

Grid conventions (torch-ngp's, so RAD-NeRF tables load as-is):
    * inputs in ``[-bound, bound]^D`` map to ``u = (x + bound) / (2 bound)``; a point with a
      coordinate outside the bound gets **zero features and zero gradients** (on every level).
    * level ``l``: ``s_l = base * per_level_scale**l``, ``scale_l = s_l - 1``, position
      ``u * scale_l + 0.5`` (``+ 0`` with ``align_corners``); resolution ``ceil(s_l)``; rows
      ``min(2**log2_hashmap_size, (res + 1)**D)`` (``res**D`` with align_corners), rounded up to
      a multiple of 8; levels stacked in one ``(rows, C)`` table at ``offsets[l]``.
    * a level whose dense grid fits its rows is indexed densely; otherwise ``"hash"`` XORs
      ``corner[d] * (1, 2654435761, 805459861)[d]`` in uint32 and ``"tiled"`` keeps the dense
      index (axes added while the running stride fits the table, as torch-ngp does), both
      modulo the level's rows.

Determinism: on the CPU every op is bitwise deterministic (the table gradient is accumulated
level by level, each by one thread, in point order). On CUDA the table gradient uses float32
``atomicAdd`` (also for float16 tables, cast at the end), so its last bits may vary run to run;
forward and input gradients are deterministic.
"""

import math
from typing import List, Sequence, Tuple

import torch

from .._backend import custom_ops

GRID_TYPES = ("hash", "tiled")
_ops = custom_ops()
INTERPOLATIONS = ("linear", "smoothstep")


def grid_level_layout(
    input_dim: int,
    num_levels: int,
    base_resolution: int,
    per_level_scale: float,
    log2_hashmap_size: int,
    align_corners: bool = False,
) -> Tuple[List[int], List[float]]:
    """Table layout of a multiresolution grid.

    Returns:
        offsets: ``num_levels + 1`` ints, level ``l`` owns table rows ``[offsets[l], offsets[l+1])``.
        scales: ``num_levels`` floats, the position scale of each level.
    """
    offsets, scales = [0], []
    for level in range(num_levels):
        s = base_resolution * per_level_scale**level
        res = int(math.ceil(s))
        side = res if align_corners else res + 1
        rows = min(2**log2_hashmap_size, side**input_dim)
        rows = int(math.ceil(rows / 8) * 8)
        offsets.append(offsets[-1] + rows)
        scales.append(s - 1.0)
    return offsets, scales


@torch.library.register_fake("pt3d_radnerf::grid_encode")
def _grid_encode_fake(inputs, embeddings, offsets, scales, gridtype, align_corners, interpolation, bound):
    return embeddings.new_empty(inputs.shape[0], len(scales) * embeddings.shape[1])


@torch.library.register_fake("pt3d_radnerf::grid_encode_backward")
def _grid_encode_backward_fake(grad_out, inputs, embeddings, offsets, scales, gridtype, align_corners,
                               interpolation, bound, input_grad):
    return torch.empty_like(embeddings), torch.empty_like(inputs) if input_grad else inputs.new_empty(0)


def _grid_encode_setup(ctx, inputs, output):
    x, embeddings, *cfg = inputs
    ctx.save_for_backward(x, embeddings)
    ctx.cfg = cfg


def _grid_encode_backward(ctx, grad_out):
    x, embeddings = ctx.saved_tensors
    input_grad = bool(ctx.needs_input_grad[0])
    grad_emb, grad_x = _ops.grid_encode_backward(
        grad_out.to(embeddings.dtype).contiguous(), x, embeddings, *ctx.cfg, input_grad)
    return (grad_x if input_grad else None), grad_emb, None, None, None, None, None, None


torch.library.register_autograd("pt3d_radnerf::grid_encode", _grid_encode_backward,
                                setup_context=_grid_encode_setup)


def grid_encode(
    inputs: torch.Tensor,
    embeddings: torch.Tensor,
    offsets: Sequence[int],
    scales: Sequence[float],
    gridtype: str = "hash",
    align_corners: bool = False,
    interpolation: str = "linear",
    bound: float = 1.0,
    check_nan: bool = True,
) -> torch.Tensor:
    """Multiresolution grid features of points.

    Args:
        inputs: (N, D) points, D in {2, 3}, in ``[-bound, bound]`` (outside: zero features).
            float32/float64 on CPU (the dtype of ``embeddings``), float32 on CUDA.
        embeddings: (rows, C) table of all levels, C in {1, 2, 4, 8}; float32/float16 on CUDA.
        offsets, scales: the level layout (see :func:`grid_level_layout`).
        gridtype: "hash" or "tiled"; interpolation: "linear" or "smoothstep".
        check_nan: raise ValueError on NaN inputs (one reduction; set False to skip the sync).

    Returns:
        (N, L * C) features in the dtype of ``embeddings``, level-major per point.
    """
    if not isinstance(inputs, torch.Tensor) or not isinstance(embeddings, torch.Tensor):
        raise TypeError("inputs and embeddings must be torch.Tensor")
    if check_nan and inputs.numel() and bool(torch.isnan(inputs).any()):
        raise ValueError("inputs contain NaN coordinates")
    return _ops.grid_encode(inputs.contiguous(), embeddings.contiguous(), [int(o) for o in offsets],
                            [float(s) for s in scales], gridtype, bool(align_corners), interpolation,
                            float(bound))


@torch.library.register_fake("pt3d_radnerf::sh_encode")
def _sh_encode_fake(dirs, degree):
    return dirs.new_empty(dirs.shape[0], degree * degree)


@torch.library.register_fake("pt3d_radnerf::sh_encode_backward")
def _sh_encode_backward_fake(grad_out, dirs, degree):
    return torch.empty_like(dirs)


def _sh_encode_setup(ctx, inputs, output):
    dirs, degree = inputs
    ctx.save_for_backward(dirs)
    ctx.degree = degree


def _sh_encode_backward(ctx, grad_out):
    (dirs,) = ctx.saved_tensors
    return _ops.sh_encode_backward(grad_out.contiguous(), dirs, ctx.degree), None


torch.library.register_autograd("pt3d_radnerf::sh_encode", _sh_encode_backward, setup_context=_sh_encode_setup)


def sh_encode(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Real spherical harmonics (tiny-cuda-nn / torch-ngp order and signs) of directions.

    Args:
        dirs: (N, 3) unit directions (not renormalised: the basis is the polynomial form, and
            the gradient is that polynomial's gradient). float32/float64 on CPU, float32 on CUDA.
        degree: number of bands, 1..8.

    Returns:
        (N, degree**2), entry ``l*l + l + m`` for band l, order m in [-l, l].
    """
    if not isinstance(dirs, torch.Tensor):
        raise TypeError(f"dirs must be a torch.Tensor, got {type(dirs).__name__}")
    return _ops.sh_encode(dirs.contiguous(), int(degree))
