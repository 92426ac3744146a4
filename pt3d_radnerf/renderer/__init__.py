"""PyTorch3D renderer components: raysampler, raymarcher, occupancy grid, packed ray bundle."""

from .ray_bundle import PackedRayBundle, pack_info

__all__ = ["PackedRayBundle", "pack_info"]
