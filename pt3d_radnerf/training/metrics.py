"""Image and lip-sync metrics: PSNR, SSIM, region PSNR, Pearson correlation.

Images are float tensors in [0, 1] shaped (H, W, C) or (B, H, W, C) (PyTorch3D's channel-last
layout); every metric averages over the batch.
"""

from typing import Sequence

import torch
import torch.nn.functional as F


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"{name} must be (H, W, C) or (B, H, W, C), got {tuple(x.shape)}")
    return x


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of the mean squared error over all pixels."""
    pred, target = _as_batch(pred, "pred"), _as_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(max_val**2 / mse)).item()


def region_psnr(pred: torch.Tensor, target: torch.Tensor, rect: Sequence[int]) -> float:
    """PSNR inside ``rect = (x0, x1, y0, y1)`` (pixel columns x0:x1, rows y0:y1)."""
    x0, x1, y0, y1 = (int(v) for v in rect)
    pred, target = _as_batch(pred, "pred"), _as_batch(target, "target")
    return psnr(pred[:, y0:y1, x0:x1], target[:, y0:y1, x0:x1])


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5,
         max_val: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K = 0.01/0.03,
    per channel, 'valid' windows only, averaged over pixels, channels and batch."""
    pred, target = _as_batch(pred, "pred"), _as_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if min(pred.shape[1:3]) < window:
        raise ValueError(f"images must be at least {window}x{window} for SSIM, got {tuple(pred.shape[1:3])}")
    x = pred.permute(0, 3, 1, 2).double()
    y = target.permute(0, 3, 1, 2).double()
    c = x.shape[1]
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(c, 1, window, window)

    def blur(t):
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean().item()


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-D series (0 when either is constant)."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"need two series of equal length >= 2, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return 0.0 if denom == 0 else (a @ b / denom).item()
