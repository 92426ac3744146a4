"""The attention window: each video frame sees the audio windows of its 8 neighbours."""

import torch

ATTENTION_FRAMES = 8  # frames idx-4 .. idx+3


def attention_windows(features: torch.Tensor, indices: torch.Tensor, size: int = ATTENTION_FRAMES) -> torch.Tensor:
    """Gathers neighbouring per-frame audio windows, zero-padded at the clip ends.

    Args:
        features: (N, W, C) per-video-frame audio windows.
        indices: (B,) int frame indices (or a Python int).

    Returns:
        (B, size, W, C); row k of item b is frame ``indices[b] - size // 2 + k`` (zeros outside
        [0, N)).
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (N, W, C), got {tuple(features.shape)}")
    idx = torch.as_tensor(indices, dtype=torch.long, device=features.device).reshape(-1)
    n = features.shape[0]
    if ((idx < 0) | (idx >= n)).any():
        raise ValueError(f"frame indices must lie in [0, {n}), got {idx.tolist()}")
    neighbours = idx[:, None] + torch.arange(size, device=features.device) - size // 2
    valid = (neighbours >= 0) & (neighbours < n)
    gathered = features[neighbours.clamp(0, n - 1)]
    return gathered * valid[..., None, None].to(features.dtype)
