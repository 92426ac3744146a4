"""Audio input: reading/resampling, log-mel features, RAD-NeRF feature files, windows."""

from .feature_files import FEATURE_TYPES, FeatureType, check_features, feature_type, load_feature_file
from .features import log_mel, logmel_windows_from_file, window_features
from .io import SAMPLE_RATE, load_audio_16k, read_audio, resample, write_wav
from .windows import ATTENTION_FRAMES, attention_windows

__all__ = [
    "ATTENTION_FRAMES", "FEATURE_TYPES", "FeatureType", "SAMPLE_RATE", "attention_windows",
    "check_features", "feature_type", "load_audio_16k", "load_feature_file", "log_mel",
    "logmel_windows_from_file", "read_audio", "resample", "window_features", "write_wav",
]
