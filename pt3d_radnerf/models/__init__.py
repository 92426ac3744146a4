"""Neural building blocks of the audio-driven radiance field."""

from .encoders import HashGridEncoder, SHEncoder

__all__ = ["HashGridEncoder", "SHEncoder"]
