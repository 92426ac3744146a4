"""Talking-head data: RAD-NeRF dataset folders -> PyTorch3D cameras, images, audio."""

from .cameras import nerf_matrix_to_ngp, opencv_c2w_to_pytorch3d, project_radnerf, radnerf_cameras
from .static_scene import StaticScene, blender_cameras, ensure_mesh_views, load_blender
from .landmarks import eye_area, lips_rect, lower_face_rect, read_lms
from .talking_head import TalkingHeadDataset, read_image

__all__ = [
    "StaticScene", "TalkingHeadDataset", "blender_cameras", "ensure_mesh_views", "eye_area", "lips_rect",
    "load_blender", "lower_face_rect", "nerf_matrix_to_ngp", "opencv_c2w_to_pytorch3d", "project_radnerf", "radnerf_cameras", "read_image", "read_lms",
]
