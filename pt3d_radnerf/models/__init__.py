"""Neural building blocks of the audio-driven radiance field."""

from .audio_net import AudioAttNet, AudioNet
from .encoders import HashGridEncoder, SHEncoder
from .radiance_field import AudioRadianceField, trunc_exp

__all__ = ["AudioAttNet", "AudioNet", "AudioRadianceField", "HashGridEncoder", "SHEncoder", "trunc_exp"]
