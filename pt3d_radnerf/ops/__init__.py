"""Low-level differentiable ops backed by the C++/CUDA kernels (one autograd Function each).

``pt3d_radnerf.ops.reference`` holds a pure-PyTorch twin of every op.
"""

from .grid_bits import morton3d, morton3d_invert, packbits
from .ray_aabb import as_aabb, near_far_from_aabb

# ---- encoders
from .encoding import grid_encode, grid_level_layout, sh_encode  # noqa: E402

__all__ = ["as_aabb", "morton3d", "morton3d_invert", "near_far_from_aabb", "packbits"]
__all__ += ["grid_encode", "grid_level_layout", "sh_encode"]
