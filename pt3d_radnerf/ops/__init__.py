"""Low-level differentiable ops backed by the C++/CUDA kernels (one autograd Function each).

``pt3d_radnerf.ops.reference`` holds a pure-PyTorch twin of every op.
"""

from .composite import composite, composite_dense, dense_packed_info
from .encoding import grid_encode, grid_level_layout, sh_encode
from .grid_bits import morton3d, morton3d_invert, packbits
from .occupancy import (decayed_max_update, dense_to_morton_index, dilate_occupancy, occupancy_march,
                        occupancy_threshold)
from .ray_aabb import as_aabb, near_far_from_aabb

__all__ = [
    "as_aabb", "composite", "composite_dense", "decayed_max_update", "dense_packed_info",
    "dense_to_morton_index", "dilate_occupancy", "grid_encode", "grid_level_layout", "morton3d",
    "morton3d_invert", "near_far_from_aabb", "occupancy_march", "occupancy_threshold", "packbits",
    "sh_encode",
]
