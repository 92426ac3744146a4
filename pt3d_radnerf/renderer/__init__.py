"""PyTorch3D renderer components: raysampler, raymarcher, occupancy grid, packed ray bundle."""

from .ray_bundle import PackedRayBundle, pack_info

__all__ = ["PackedRayBundle", "pack_info"]

# ---- occupancy grid + raysampler
from .occupancy_grid import OccupancyGrid  # noqa: E402
from .raysampler import OccupancyGridRaysampler, rays_from_xys  # noqa: E402

__all__ += ["OccupancyGrid", "OccupancyGridRaysampler", "rays_from_xys"]
