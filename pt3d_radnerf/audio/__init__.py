"""Audio input: reading/resampling, log-mel features, RAD-NeRF feature files, windows.

Layout everywhere: per video frame a window of W ASR frames x C channels, (N, W, C), as RAD-NeRF
stores its .npy files; attention windows are (B, 8, W, C).
"""

from .feature_files import (FEATURE_FILES, FEATURE_TYPES, FILE_SUFFIXES, FeatureType, check_features,
                            feature_file_type, feature_type, file_name_type, find_feature_file,
                            load_feature_file, npy_shape, types_for_shape)
from .features import log_mel, logmel_windows, logmel_windows_from_file, num_video_frames, window_features
from .io import SAMPLE_RATE, load_audio_16k, read_audio, resample, write_wav
from .windows import ATTENTION_FRAMES, attention_windows

__all__ = [
    "ATTENTION_FRAMES", "FEATURE_FILES", "FEATURE_TYPES", "FILE_SUFFIXES", "FeatureType", "SAMPLE_RATE",
    "attention_windows", "check_features", "feature_file_type", "feature_type", "file_name_type",
    "find_feature_file", "load_audio_16k", "load_feature_file", "log_mel", "npy_shape", "types_for_shape",
    "logmel_windows", "logmel_windows_from_file", "num_video_frames", "read_audio", "resample",
    "window_features", "write_wav",
]
