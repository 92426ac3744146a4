"""RAD-NeRF camera poses -> PyTorch3D cameras.

RAD-NeRF stores OpenGL camera-to-world matrices (camera looks down -z, +y up). Its loader moves
them into instant-ngp's world with ``nerf_matrix_to_ngp``: world axes cycle (new rows = old rows
1, 2, 0), camera columns 1 and 2 flip sign (OpenGL -> OpenCV camera: +z forward, +y down) and the
translation is scaled (4) and offset. Rays then go through pixel (col + 0.5, row + 0.5) along
``((u - cx) / fx, (v - cy) / fy, 1)`` in that OpenCV camera.

PyTorch3D's view space is +X left, +Y up, +Z forward with row vectors ``X_view = X_world R + T``,
so with the OpenCV camera-to-world (R_c2w, t): ``R = R_c2w diag(-1, -1, 1)``, ``T = -t R``.
Intrinsics go to PyTorch3D's NDC convention (short side spans [-1, 1], +x left, +y up), whose
pixel centres sit at the same (col + 0.5, row + 0.5) screen positions RAD-NeRF uses.
"""

from typing import Sequence, Tuple

import torch
from pytorch3d.renderer import PerspectiveCameras

NGP_SCALE = 4.0
NGP_OFFSET = (0.0, 0.0, 0.0)
_FLIP_XY = torch.tensor([-1.0, -1.0, 1.0])


def nerf_matrix_to_ngp(pose: torch.Tensor, scale: float = NGP_SCALE,
                       offset: Sequence[float] = NGP_OFFSET) -> torch.Tensor:
    """(..., 4, 4) OpenGL camera-to-world -> (..., 4, 4) OpenCV camera-to-world in RAD-NeRF's world."""
    pose = torch.as_tensor(pose, dtype=torch.float64)
    out = torch.zeros_like(pose)
    rows = pose[..., [1, 2, 0], :]
    out[..., :3, 0] = rows[..., :3, 0]
    out[..., :3, 1] = -rows[..., :3, 1]
    out[..., :3, 2] = -rows[..., :3, 2]
    out[..., :3, 3] = rows[..., :3, 3] * scale + torch.as_tensor(offset, dtype=pose.dtype)
    out[..., 3, 3] = 1.0
    return out


def opencv_c2w_to_pytorch3d(c2w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, 4, 4) OpenCV camera-to-world -> PyTorch3D (R (B, 3, 3), T (B, 3))."""
    rot, t = c2w[..., :3, :3], c2w[..., :3, 3]
    R = rot * _FLIP_XY.to(c2w)  # scales columns 0 and 1
    T = -(t[..., None, :] @ R)[..., 0, :]
    return R, T


def intrinsics_to_ndc(fx: float, fy: float, cx: float, cy: float, width: int, height: int):
    """Pixel intrinsics -> PyTorch3D NDC (focal (2,), principal point (2,))."""
    s = min(width, height) / 2.0
    focal = torch.tensor([fx / s, fy / s], dtype=torch.float64)
    pp = torch.tensor([-(cx - width / 2.0) / s, -(cy - height / 2.0) / s], dtype=torch.float64)
    return focal, pp


def radnerf_cameras(poses: torch.Tensor, fx: float, fy: float, cx: float, cy: float, width: int,
                    height: int, scale: float = NGP_SCALE, offset: Sequence[float] = NGP_OFFSET,
                    dtype: torch.dtype = torch.float32, device="cpu") -> PerspectiveCameras:
    """Batched PyTorch3D cameras for (B, 4, 4) RAD-NeRF ``transform_matrix`` poses."""
    c2w = nerf_matrix_to_ngp(torch.as_tensor(poses).reshape(-1, 4, 4), scale, offset)
    R, T = opencv_c2w_to_pytorch3d(c2w)
    focal, pp = intrinsics_to_ndc(fx, fy, cx, cy, width, height)
    b = R.shape[0]
    return PerspectiveCameras(
        R=R.to(dtype), T=T.to(dtype), focal_length=focal.to(dtype).expand(b, 2),
        principal_point=pp.to(dtype).expand(b, 2), image_size=torch.tensor([[height, width]], dtype=dtype).expand(b, 2),
        device=device,
    )


def project_radnerf(points: torch.Tensor, c2w_ngp: torch.Tensor, fx: float, fy: float, cx: float,
                    cy: float) -> torch.Tensor:
    """Pixel positions (N, 2) = (u, v) of world points (N, 3) in RAD-NeRF's own pinhole model
    (the inverse of its ray generation); used to check the conversion."""
    rot, t = c2w_ngp[:3, :3], c2w_ngp[:3, 3]
    cam = (points - t) @ rot  # = R^T (X - t) for each row
    return torch.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
