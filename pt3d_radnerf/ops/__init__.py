"""Low-level differentiable ops backed by the C++/CUDA kernels (one autograd Function each).

``pt3d_radnerf.ops.reference`` holds a pure-PyTorch twin of every op.
"""

from .grid_bits import morton3d, morton3d_invert, packbits
from .ray_aabb import as_aabb, near_far_from_aabb

__all__ = ["as_aabb", "morton3d", "morton3d_invert", "near_far_from_aabb", "packbits"]

# ---- occupancy grid marching and update helpers
from .occupancy import (  # noqa: E402
    decayed_max_update,
    dilate_occupancy,
    dense_to_morton_index,
    occupancy_march,
    occupancy_threshold,
)

__all__ += [
    "decayed_max_update",
    "dilate_occupancy",
    "dense_to_morton_index",
    "occupancy_march",
    "occupancy_threshold",
]

