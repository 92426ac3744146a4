"""Neural components: audio encoders (and, with the encoders, the radiance field)."""

from .audio_net import AudioAttNet, AudioNet

__all__ = ["AudioAttNet", "AudioNet"]
