"""PyTorch3D renderer components: raysampler, raymarcher, occupancy grid, packed ray bundle."""

from .occupancy_grid import OccupancyGrid
from .ray_bundle import PackedRayBundle, pack_info
from .raymarcher import OccupancyGridRaymarcher, blend_background
from .raysampler import OccupancyGridRaysampler, ndc_extent, ndc_grid_pixels, rays_from_xys
from .render import composite_compacted, render_chunked, render_compacted

__all__ = [
    "OccupancyGrid", "OccupancyGridRaymarcher", "OccupancyGridRaysampler", "PackedRayBundle",
    "blend_background", "composite_compacted", "ndc_extent", "ndc_grid_pixels", "pack_info", "rays_from_xys",
    "render_chunked", "render_compacted",
]
