"""Neural building blocks of the audio-driven radiance field."""

from .audio_net import AudioAttNet, AudioNet
from .encoders import HashGridEncoder, SHEncoder

__all__ = ["AudioAttNet", "AudioNet", "HashGridEncoder", "SHEncoder"]
