"""The attention window: each video frame sees the audio windows of its 8 neighbours."""

from typing import Sequence, Union

import torch

ATTENTION_FRAMES = 8  # frames idx-4 .. idx+3 (RAD-NeRF's default --att 2)


def attention_windows(features: torch.Tensor, indices: Union[int, Sequence[int], torch.Tensor],
                      size: int = ATTENTION_FRAMES) -> torch.Tensor:
    """Gathers neighbouring per-frame audio windows, zero-padded at the clip ends.

    Args:
        features: (N, W, C) per-video-frame audio windows.
        indices: (B,) integer frame indices in [0, N) (or a Python int / list).
        size: number of neighbours; frame ``idx`` sees ``idx - size//2 .. idx + (size+1)//2 - 1``.

    Returns:
        (B, size, W, C); row k of item b is frame ``indices[b] - size // 2 + k`` (zeros outside
        [0, N)). Differentiable w.r.t. ``features``.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (N, W, C), got {tuple(features.shape)}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    idx = torch.as_tensor(indices, device=features.device)
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.long().reshape(-1)
    n = features.shape[0]
    if ((idx < 0) | (idx >= n)).any():
        raise ValueError(f"frame indices must lie in [0, {n}), got {idx.tolist()}")
    neighbours = idx[:, None] + torch.arange(size, device=features.device) - size // 2  # (B, size)
    valid = (neighbours >= 0) & (neighbours < n)
    gathered = features[neighbours.clamp(0, max(n - 1, 0))]
    return gathered * valid[..., None, None].to(features.dtype)
