"""Training: config, the step, inference, the resumable loop, metrics, evaluation, video."""

from .checkpoint import AtomicCheckpointer, CheckpointReadError, RNGState, read_checkpoint
from .config import FitConfig, ModelSpec, add_config_arguments, check_audio_compatible, config_from_args
from .inference import HeadModel, HeadTorsoModel, build_grid, load_model, render_frame, render_layers
from .losses import ambient_loss, opacity_entropy, ramp
from .metrics import pearson, psnr, region_psnr, ssim
from .trainer import StageTrainer, TalkingHeadTrainer, TorsoTrainer
from .video import probe_streams, write_video

__all__ = [
    "AtomicCheckpointer", "CheckpointReadError", "FitConfig", "HeadModel", "HeadTorsoModel", "ModelSpec",
    "RNGState", "StageTrainer", "TalkingHeadTrainer", "TorsoTrainer", "load_model", "render_layers", "add_config_arguments", "ambient_loss", "build_grid", "check_audio_compatible",
    "config_from_args", "opacity_entropy", "pearson", "probe_streams", "psnr", "ramp", "read_checkpoint",
    "region_psnr", "render_frame", "ssim", "write_video",
]
