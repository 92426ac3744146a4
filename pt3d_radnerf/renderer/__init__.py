"""PyTorch3D renderer components: raysampler, raymarcher, occupancy grid, packed ray bundle."""

from .ray_bundle import PackedRayBundle, pack_info
from .raymarcher import OccupancyGridRaymarcher, blend_background

__all__ = ["OccupancyGridRaymarcher", "PackedRayBundle", "blend_background", "pack_info"]
