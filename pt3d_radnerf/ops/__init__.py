"""Low-level ops backed by the C++/CUDA kernels.

Every kernel is a dispatcher op ``torch.ops.pt3d_radnerf.<name>`` (schema and CPU/CUDA kernels
registered in C++, which also validates the inputs); the modules here register its fake (meta)
implementation and its autograd formula with ``torch.library`` and wrap it in a function that only
converts arguments (dtypes, contiguity, defaults). So the ops work under ``torch.compile``.
``pt3d_radnerf.ops.reference`` holds a pure-PyTorch twin of every op (test oracle only).
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
