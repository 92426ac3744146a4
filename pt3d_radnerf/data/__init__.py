"""Talking-head data: RAD-NeRF dataset folders -> PyTorch3D cameras, images, audio."""

from .cameras import nerf_matrix_to_ngp, opencv_c2w_to_pytorch3d, project_radnerf, radnerf_cameras
from .static_scene import StaticScene, blender_cameras, ensure_mesh_views, load_blender
from .landmarks import eye_area, lips_rect, lower_face_rect, read_lms
from .parsing import HEAD_RGB, NECK_RGB, TORSO_RGB, class_mask, decode_head_mask
from .talking_head import (EYE_SOURCES, TalkingHeadDataset, Transforms, decode_image, image_size, read_au45,
                           read_image, read_transforms)
from .torso import alpha_over, bg_coords, convert_poses, decode_rgba

__all__ = [
    "EYE_SOURCES", "HEAD_RGB", "NECK_RGB", "StaticScene", "TORSO_RGB", "TalkingHeadDataset", "Transforms",
    "alpha_over", "bg_coords", "blender_cameras", "class_mask", "convert_poses", "decode_head_mask",
    "decode_image", "decode_rgba", "ensure_mesh_views", "eye_area", "image_size", "lips_rect", "load_blender",
    "lower_face_rect", "nerf_matrix_to_ngp", "opencv_c2w_to_pytorch3d", "project_radnerf", "radnerf_cameras",
    "read_au45", "read_image", "read_lms", "read_transforms",
]
