"""Training utilities: metrics, video export (more to come: trainer, losses, checkpoints)."""

from .metrics import pearson, psnr, region_psnr, ssim
from .video import probe_streams, write_video

__all__ = ["pearson", "probe_streams", "psnr", "region_psnr", "ssim", "write_video"]
