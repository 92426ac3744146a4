"""Training: the RAD-NeRF fitting loop, resumable checkpoints, losses, metrics, evaluation, video."""

from .checkpoint import AtomicCheckpointer, RNGState
from .losses import ambient_loss, opacity_entropy, ramp
from .metrics import pearson, psnr, region_psnr, ssim
from .trainer import FitConfig, ModelSpec, TalkingHeadTrainer, load_spec
from .video import probe_streams, write_video

__all__ = [
    "AtomicCheckpointer", "FitConfig", "ModelSpec", "RNGState", "TalkingHeadTrainer", "ambient_loss",
    "load_spec", "opacity_entropy", "pearson", "probe_streams", "psnr", "ramp", "region_psnr", "ssim",
    "write_video",
]
