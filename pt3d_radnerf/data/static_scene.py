"""Static scenes for NeRF: generated mesh views and NeRF-synthetic ("blender") folders.

Both end as a :class:`StaticScene` (images composited on a background, silhouettes, PyTorch3D
cameras, the scene's box and depth range), read by :func:`load_blender`. The generated scene is
written in the blender layout itself, so one loader serves both:

* :func:`ensure_mesh_views` renders a procedural coloured object (a bumpy striped ico-sphere in
  a tilted ring) with PyTorch3D's mesh renderer from ``FoVPerspectiveCameras`` on an orbit, and
  caches the views under ``$PT3D_RADNERF_CACHE/static/<config hash>`` (default
  ``~/.cache/pt3d_radnerf``), written atomically;
* :func:`load_blender` reads ``transforms_{split}.json`` (``camera_angle_x``, frames of
  ``file_path`` + ``transform_matrix``) with RGBA PNGs, as nerf-pytorch / torch-ngp users have.

Camera convention of the blender format: ``transform_matrix`` is an OpenGL camera-to-world
matrix (camera looks down its -z, +y up); the horizontal field of view ``camera_angle_x`` gives
``f = W / 2 / tan(camera_angle_x / 2)`` pixels, principal point at the image centre; pixel
(row, col) is centred at ``(col + 0.5, row + 0.5)`` (Blender renders pixel centres;
nerf-pytorch's rays go through integer positions, half a pixel off). The conversion to
PyTorch3D's ``PerspectiveCameras`` is exact: ``transform_points_screen`` puts every world point
at the pixel position of the pinhole model.
"""

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F
from pytorch3d.renderer import PerspectiveCameras

from ..atomic import atomic_dir, write_text
from .cameras import intrinsics_to_ndc, opencv_c2w_to_pytorch3d
from .synthetic import default_cache_dir

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
# nerf-synthetic's scene bounds (nerf-pytorch: near 2, far 6; objects inside [-1.5, 1.5]^3),
# used when a transforms file does not carry our "near" / "far" / "aabb" keys.
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0
BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
_GL_TO_CV = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)  # flips camera columns y and z


@dataclass
class StaticScene:
    """Views of a static scene.

    Attributes:
        images: (N, H, W, 3) float32 in [0, 1], composited on ``background``.
        silhouettes: (N, H, W) float32 alpha (1 on the object).
        cameras: PyTorch3D ``PerspectiveCameras`` (batch N, NDC), float32.
        background: the (3,) colour the images were composited on.
        aabb: (xmin, ymin, zmin, xmax, ymax, zmax) box holding the scene.
        min_depth, max_depth: ray depth range (PyTorch3D ``lengths`` units: view-space z).
    """

    images: torch.Tensor
    silhouettes: torch.Tensor
    cameras: PerspectiveCameras
    background: Tuple[float, float, float]
    aabb: Tuple[float, ...]
    min_depth: float
    max_depth: float

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W)."""
        return tuple(self.images.shape[1:3])


# ---- camera conversion -----------------------------------------------------------------------
def blender_cameras(c2w: torch.Tensor, camera_angle_x: float, width: int, height: int,
                    dtype: torch.dtype = torch.float32, device="cpu") -> PerspectiveCameras:
    """PyTorch3D cameras for (N, 4, 4) OpenGL camera-to-world ``transform_matrix`` poses.

    OpenGL -> OpenCV camera (columns y and z flipped), then
    :func:`pt3d_radnerf.data.cameras.opencv_c2w_to_pytorch3d`; intrinsics ``f = W / 2 /
    tan(camera_angle_x / 2)`` for both axes, principal point at the centre, in PyTorch3D's NDC.
    """
    c2w = torch.as_tensor(c2w, dtype=torch.float64).reshape(-1, 4, 4).clone()
    c2w[:, :3, :3] = c2w[:, :3, :3] * _GL_TO_CV
    R, T = opencv_c2w_to_pytorch3d(c2w)
    f = width / 2.0 / math.tan(camera_angle_x / 2.0)
    focal, pp = intrinsics_to_ndc(f, f, width / 2.0, height / 2.0, width, height)
    n = R.shape[0]
    return PerspectiveCameras(
        R=R.to(dtype), T=T.to(dtype), focal_length=focal.to(dtype).expand(n, 2),
        principal_point=pp.to(dtype).expand(n, 2),
        image_size=torch.tensor([[height, width]], dtype=dtype).expand(n, 2), device=device,
    )


def pytorch3d_to_blender(R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """PyTorch3D world-to-view (R (N, 3, 3), T (N, 3)) -> (N, 4, 4) OpenGL camera-to-world
    (the inverse of :func:`blender_cameras`' pose conversion)."""
    R, T = R.double(), T.double()
    c2w = torch.zeros(R.shape[0], 4, 4, dtype=torch.float64)
    # X_view = X_world R + T: camera centre -T R^T; PyTorch3D view axes (+x left, +y up, +z
    # forward) are the OpenGL camera's (+x right, +y up, -z forward) with x and z flipped.
    c2w[:, :3, :3] = R * torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)
    c2w[:, :3, 3] = -(T[:, None, :] @ R.transpose(1, 2))[:, 0]
    c2w[:, 3, 3] = 1.0
    return c2w


# ---- blender folders ---------------------------------------------------------------------------
def _read_transforms(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NeRF-synthetic transforms file not found: {path}")
    try:
        with open(path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object with camera_angle_x and frames")
    if not isinstance(meta.get("camera_angle_x"), (int, float)) or not 0 < meta["camera_angle_x"] < math.pi:
        raise ValueError(f"{path}: camera_angle_x must be a number in (0, pi) radians, "
                         f"got {meta.get('camera_angle_x')!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: 'frames' must be a non-empty list")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise ValueError(f"{path}: frame {i} has no 'file_path' string")
        try:
            m = np.asarray(frame.get("transform_matrix", None), dtype=np.float64)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.shape != (4, 4):
            raise ValueError(f"{path}: frame {i} needs a 4 x 4 numeric 'transform_matrix', got "
                             f"{frame.get('transform_matrix')!r:.80}")
        if not np.isfinite(m).all() or not np.allclose(m[3], [0, 0, 0, 1]):
            raise ValueError(f"{path}: frame {i} 'transform_matrix' must be finite with last row 0 0 0 1")
    return meta


def _read_rgba(path: str, json_path: str) -> np.ndarray:
    """(H, W, 4) float32 straight-alpha RGBA in [0, 1] (opaque alpha for RGB files)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path} (listed in {json_path}) not found")
    img = np.asarray(imageio.imread(path))
    if img.dtype not in (np.uint8, np.uint16) or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an 8/16-bit RGB or RGBA image, got {img.dtype} {img.shape}")
    img = img.astype(np.float32) / np.iinfo(img.dtype).max
    if img.shape[2] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], -1)
    return img


def load_blender(root: str, split: str = "train", downscale: int = 1,
                 background: Sequence[float] = (1.0, 1.0, 1.0), max_views: Optional[int] = None,
                 device="cpu") -> StaticScene:
    """Reads a NeRF-synthetic folder's ``transforms_{split}.json`` and its RGBA PNGs.

    Args:
        root: the folder (``transforms_train.json``, ``transforms_val.json``, ``..._test.json``).
        split: "train", "val" or "test".
        downscale: integer factor; images are box-filtered (premultiplied alpha) and the cameras
            keep the same field of view.
        background: colour the RGBA images are composited on (white, as nerf-synthetic).
        max_views: keep only the first ``max_views`` frames.
        device: where the tensors and cameras go.

    Depth range and box: the json's "near", "far" and "aabb" keys when present (our generated
    scenes write them), else nerf-synthetic's near 2, far 6 and box [-1.5, 1.5]^3.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    json_path = os.path.join(root, f"transforms_{split}.json")
    meta = _read_transforms(json_path)
    frames = meta["frames"][:max_views]
    rgba, poses = [], []
    for frame in frames:
        path = os.path.join(root, os.path.normpath(frame["file_path"]))
        if not os.path.splitext(path)[1]:
            path += ".png"  # nerf-synthetic lists "./train/r_0"
        img = _read_rgba(path, json_path)
        if rgba and img.shape != rgba[0].shape:
            raise ValueError(f"{path}: image size {img.shape[:2]} differs from the first frame's "
                             f"{rgba[0].shape[:2]} ({json_path})")
        rgba.append(img)
        poses.append(np.asarray(frame["transform_matrix"], dtype=np.float64))
    rgba = torch.from_numpy(np.stack(rgba))
    h, w = rgba.shape[1:3]
    if h % downscale or w % downscale:
        raise ValueError(f"downscale {downscale} must divide the image size {h} x {w} ({json_path})")
    premult = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    if downscale > 1:
        premult = F.avg_pool2d(premult.permute(0, 3, 1, 2), downscale).permute(0, 2, 3, 1)
    alpha = premult[..., 3]
    bg = torch.tensor(background, dtype=torch.float32)
    images = premult[..., :3] + (1.0 - alpha[..., None]) * bg
    h, w = h // downscale, w // downscale
    cameras = blender_cameras(torch.from_numpy(np.stack(poses)), float(meta["camera_angle_x"]), w, h,
                              device=device)
    aabb = tuple(float(v) for v in meta.get("aabb", BLENDER_AABB))
    if len(aabb) != 6:
        raise ValueError(f"{json_path}: 'aabb' must have 6 numbers, got {len(aabb)}")
    near, far = float(meta.get("near", BLENDER_NEAR)), float(meta.get("far", BLENDER_FAR))
    if not 0 <= near < far:
        raise ValueError(f"{json_path}: need 0 <= near < far, got {near} and {far}")
    return StaticScene(images.contiguous().to(device), alpha.contiguous().to(device), cameras,
                       tuple(float(v) for v in background), aabb, near, far)


# ---- generated mesh views ---------------------------------------------------------------------
@dataclass(frozen=True)
class MeshViewsConfig:
    """The generated scene: ``n_views`` views of ``size`` x ``size`` pixels on an orbit of radius
    ``distance``; every ``val_every``-th view is held out as "val" (also written as "test")."""

    n_views: int = 40
    size: int = 64
    distance: float = 3.0
    fov: float = 45.0  # degrees
    val_every: int = 8

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "v": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


BOUNDING_RADIUS = 1.12  # the object fits in this sphere (ring: 0.95 + 0.13 tube)


def scene_mesh():
    """The procedural object: a bumpy ico-sphere with colour stripes, in a tilted orange ring."""
    from pytorch3d.renderer import TexturesVertex
    from pytorch3d.structures import Meshes, join_meshes_as_scene
    from pytorch3d.utils import ico_sphere, torus

    ball = ico_sphere(3)
    v = ball.verts_packed()
    lon, lat = torch.atan2(v[:, 2], v[:, 0]), torch.asin(v[:, 1].clamp(-1, 1))
    radius = 0.62 * (1.0 + 0.12 * torch.sin(5 * lon) * torch.cos(3 * lat))
    stripes = (torch.sin(6 * lat) > 0).float()[:, None]
    hue = 0.5 + 0.5 * torch.stack([torch.cos(lon), torch.cos(lon - 2.1), torch.cos(lon + 2.1)], -1)
    ball_colors = stripes * hue + (1 - stripes) * torch.tensor([0.15, 0.15, 0.2])
    ring = torus(r=0.13, R=0.95, sides=10, rings=32)
    tilt = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(0.5), -math.sin(0.5)], [0.0, math.sin(0.5), math.cos(0.5)]])
    ring_verts = ring.verts_packed() @ tilt.T
    ring_colors = torch.tensor([0.95, 0.55, 0.1]).expand(ring_verts.shape[0], 3)

    ball = Meshes([v * radius[:, None]], [ball.faces_packed()], textures=TexturesVertex([ball_colors]))
    ring = Meshes([ring_verts], [ring.faces_packed()], textures=TexturesVertex([ring_colors]))
    return join_meshes_as_scene([ball, ring])


def orbit_views(config: MeshViewsConfig):
    """PyTorch3D (R (N, 3, 3), T (N, 3)) of the generated views: azimuths around the full
    circle, elevations spread over [5, 40] degrees (golden-ratio sequence)."""
    from pytorch3d.renderer import look_at_view_transform

    k = torch.arange(config.n_views, dtype=torch.float32)
    azim = -180.0 + 360.0 * k / config.n_views
    elev = 5.0 + 35.0 * torch.remainder(k * 0.6180339887, 1.0)
    return look_at_view_transform(dist=config.distance, elev=elev, azim=azim)


def render_mesh_views(config: MeshViewsConfig) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """RGBA uint8 views (N, S, S, 4) (straight alpha) of :func:`scene_mesh`, and their PyTorch3D
    (R, T). Rendered at twice the size and box-filtered (anti-aliased edges)."""
    from pytorch3d.renderer import (BlendParams, FoVPerspectiveCameras, HardPhongShader, Materials,
                                    MeshRasterizer, MeshRenderer, PointLights, RasterizationSettings)

    R, T = orbit_views(config)
    mesh = scene_mesh()
    cams = FoVPerspectiveCameras(R=R.float(), T=T.float(), fov=config.fov, znear=0.1)
    raster = RasterizationSettings(image_size=2 * config.size, blur_radius=0.0, faces_per_pixel=1)
    lights = PointLights(location=((2.0, 3.0, 2.5),), ambient_color=((0.6,) * 3,),
                         diffuse_color=((0.5,) * 3,), specular_color=((0.15,) * 3,))
    shader = HardPhongShader(lights=lights, materials=Materials(shininess=20.0),
                             blend_params=BlendParams(background_color=(0.0, 0.0, 0.0)))
    renderer = MeshRenderer(MeshRasterizer(raster_settings=raster), shader)
    with torch.no_grad():
        rgba = torch.cat([renderer(mesh.extend(len(R[i : i + 8])), cameras=cams[list(range(i, min(i + 8, len(R))))])
                          for i in range(0, len(R), 8)])
    rgba = rgba.clamp(0, 1)
    premult = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    premult = F.avg_pool2d(premult.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    alpha = premult[..., 3:]
    straight = torch.where(alpha > 0, premult[..., :3] / alpha.clamp(min=1e-8), torch.zeros_like(alpha))
    out = torch.cat([straight, alpha], -1)
    return (out.numpy() * 255.0).round().astype(np.uint8), R, T


def write_mesh_views(root: str, config: MeshViewsConfig) -> None:
    """Renders the views and writes them into the existing empty folder ``root`` as a blender
    folder (RGBA PNGs, transforms_{train,val,test}.json with our near / far / aabb keys)."""
    rgba, R, T = render_mesh_views(config)
    poses = pytorch3d_to_blender(R, T)
    common = {"camera_angle_x": math.radians(config.fov), "near": config.distance - BOUNDING_RADIUS,
              "far": config.distance + BOUNDING_RADIUS, "aabb": [-BOUNDING_RADIUS] * 3 + [BOUNDING_RADIUS] * 3}
    splits = {"train": [], "val": []}
    for i in range(config.n_views):
        split = "val" if i % config.val_every == 0 else "train"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        imageio.imwrite(os.path.join(root, split, f"r_{i}.png"), rgba[i])
        splits[split].append({"file_path": f"./{split}/r_{i}", "transform_matrix": poses[i].tolist()})
    for split, frames in (("train", splits["train"]), ("val", splits["val"]), ("test", splits["val"])):
        write_text(os.path.join(root, f"transforms_{split}.json"), json.dumps({**common, "frames": frames}, indent=1))
    write_text(os.path.join(root, "config.json"),
               json.dumps({**dataclasses.asdict(config), "format_version": FORMAT_VERSION}))


def ensure_mesh_views(config: Optional[MeshViewsConfig] = None, cache_dir: Optional[str] = None) -> str:
    """Folder of the generated views for ``config`` (a blender folder for :func:`load_blender`),
    rendering them on first use into ``<cache>/static/<config hash>`` (atomically: a complete
    folder or none)."""
    config = config or MeshViewsConfig()
    if config.n_views < 2 or config.val_every < 2 or config.size < 8:
        raise ValueError(f"MeshViewsConfig needs n_views >= 2, val_every >= 2, size >= 8, got {config}")
    root = os.path.join(cache_dir or default_cache_dir(), "static", config.key())
    if not os.path.isfile(os.path.join(root, "config.json")):
        with atomic_dir(root) as tmp:
            write_mesh_views(tmp, config)
    return root
