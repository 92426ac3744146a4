"""Neural building blocks of the audio-driven radiance field, and the per-sample view of a ray
bundle (:func:`ray_points`) that lets any implicit function accept dense and packed bundles."""

from .audio_net import AudioAttNet, AudioNet
from .encoders import HashGridEncoder, SHEncoder
from .nerf_field import HarmonicNeRFField
from .radiance_field import RADNERF_AABB, AudioRadianceField, trunc_exp
from .sampling import RayPoints, is_packed, ray_points, sample_camera_index
from .torso import FrequencyEncoder, TorsoField, composite_head_torso

__all__ = [
    "AudioAttNet", "AudioNet", "AudioRadianceField", "FrequencyEncoder", "HarmonicNeRFField", "HashGridEncoder",
    "RADNERF_AABB", "RayPoints", "SHEncoder", "TorsoField", "composite_head_torso", "is_packed", "ray_points",
    "sample_camera_index", "trunc_exp",
]
