"""Training: config, the step, inference, the resumable loop, metrics, evaluation, video."""

from .checkpoint import AtomicCheckpointer, CheckpointReadError, RNGState, read_checkpoint
from .config import FitConfig, ModelSpec, add_config_arguments, check_audio_compatible, config_from_args
from .inference import HeadModel, build_grid, render_frame
from .losses import ambient_loss, opacity_entropy, ramp
from .metrics import pearson, psnr, region_psnr, ssim
from .trainer import TalkingHeadTrainer
from .video import probe_streams, write_video

__all__ = [
    "AtomicCheckpointer", "CheckpointReadError", "FitConfig", "HeadModel", "ModelSpec", "RNGState",
    "TalkingHeadTrainer", "add_config_arguments", "ambient_loss", "build_grid", "check_audio_compatible",
    "config_from_args", "opacity_entropy", "pearson", "probe_streams", "psnr", "ramp", "read_checkpoint",
    "region_psnr", "render_frame", "ssim", "write_video",
]
