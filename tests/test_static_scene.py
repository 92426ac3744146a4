"""Static scenes: the NeRF-synthetic loader's camera conversion and errors, and the generated,
cached mesh views."""

import json
import math
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from pytorch3d.renderer import FoVPerspectiveCameras

from pt3d_radnerf.data.static_scene import (MeshViewsConfig, blender_cameras, ensure_mesh_views, load_blender,
                                            orbit_views, pytorch3d_to_blender)


def _gl_pose(rng) -> np.ndarray:
    """A random OpenGL camera-to-world pose 4 units from the origin, looking roughly at it."""
    eye = rng.normal(size=3)
    eye = 4.0 * eye / np.linalg.norm(eye)
    back = eye / np.linalg.norm(eye)  # OpenGL cameras look down -z: +z points away from the scene
    right = np.cross(rng.normal(size=3), back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, back], 1)
    pose[:3, 3] = eye
    return pose


def _pinhole(points: np.ndarray, pose: np.ndarray, angle_x: float, width: int, height: int) -> np.ndarray:
    """(u, v) pixel positions (pixel centres at +0.5) of world points in the OpenGL camera."""
    cam = (points - pose[:3, 3]) @ pose[:3, :3]  # world -> camera (R^T (X - t))
    f = width / 2 / math.tan(angle_x / 2)
    # OpenGL: +x right, +y up, the scene at -z; image v grows downwards.
    return np.stack([width / 2 + f * cam[:, 0] / -cam[:, 2], height / 2 - f * cam[:, 1] / -cam[:, 2]], -1)


def _write_blender(root, poses, angle_x, width, height, split="train", rgba=None):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    frames = []
    for i, pose in enumerate(poses):
        img = rgba[i] if rgba is not None else np.full((height, width, 4), 255, np.uint8)
        imageio.imwrite(os.path.join(root, split, f"r_{i}.png"), img)
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()})
    with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
        json.dump({"camera_angle_x": angle_x, "frames": frames}, f)


@pytest.mark.parametrize("width, height", [(40, 40), (48, 32)])
def test_blender_cameras_match_the_pinhole_model(width, height):
    rng = np.random.default_rng(0)
    poses = np.stack([_gl_pose(rng) for _ in range(3)])
    angle_x = 0.69
    cams = blender_cameras(torch.from_numpy(poses), angle_x, width, height)  # float32 (PyTorch3D's)
    points = rng.uniform(-1, 1, size=(50, 3))
    screen = cams.transform_points_screen(torch.from_numpy(points).float()[None].expand(3, -1, -1))
    for i, pose in enumerate(poses):
        expected = _pinhole(points, pose, angle_x, width, height)
        np.testing.assert_allclose(screen[i, :, :2].numpy(), expected, atol=2e-4)
    # Round trip to the json convention.
    np.testing.assert_allclose(pytorch3d_to_blender(cams.R, cams.T).numpy(), poses, atol=1e-5)


def test_load_blender_composites_downscales_and_converts(tmp_path):
    rng = np.random.default_rng(1)
    poses = [_gl_pose(rng) for _ in range(2)]
    rgba = rng.integers(0, 256, size=(2, 8, 12, 4), dtype=np.uint8)
    _write_blender(str(tmp_path), poses, 0.8, 12, 8, rgba=rgba)
    scene = load_blender(str(tmp_path), "train", downscale=2, background=(0.0, 0.5, 1.0))
    assert scene.images.shape == (2, 4, 6, 3) and scene.silhouettes.shape == (2, 4, 6)
    x = rgba.astype(np.float64) / 255
    premult = np.concatenate([x[..., :3] * x[..., 3:], x[..., 3:]], -1)
    pooled = premult.reshape(2, 4, 2, 6, 2, 4).mean((2, 4))
    expected = pooled[..., :3] + (1 - pooled[..., 3:]) * np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(scene.images.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(scene.silhouettes.numpy(), pooled[..., 3], atol=1e-6)
    # Downscaled cameras: the pinhole model at the new size.
    points = rng.uniform(-1, 1, size=(20, 3))
    screen = scene.cameras.transform_points_screen(torch.from_numpy(points).float()[None].expand(2, -1, -1))
    for i, pose in enumerate(poses):
        np.testing.assert_allclose(screen[i, :, :2].numpy(), _pinhole(points, pose, 0.8, 6, 4), atol=1e-3)
    assert (scene.min_depth, scene.max_depth) == (2.0, 6.0)


def test_load_blender_errors_name_the_file(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="transforms_train.json"):
        load_blender(root)
    pose = _gl_pose(np.random.default_rng(2))
    _write_blender(root, [pose], 0.8, 8, 8)
    path = os.path.join(root, "transforms_train.json")
    for meta, message in [({"frames": []}, "camera_angle_x"),
                          ({"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0"}]}, "frame 0 needs a 4 x 4"),
                          ({"camera_angle_x": 0.8,
                            "frames": [{"file_path": "./train/r_0", "transform_matrix": [["a"] * 4] * 4}]},
                           "frame 0 needs a 4 x 4"),
                          ({"camera_angle_x": 0.8,
                            "frames": [{"file_path": "./train/x", "transform_matrix": pose.tolist()}]},
                           "x.png")]:
        with open(path, "w") as f:
            json.dump(meta, f)
        with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
            load_blender(root)
        assert "transforms_train.json" in str(info.value)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="transforms_train.json: not valid JSON"):
        load_blender(root)


def test_generated_views_are_cached_deterministic_and_consistent(tmp_path):
    config = MeshViewsConfig(n_views=6, size=16, val_every=3)
    root = ensure_mesh_views(config, cache_dir=str(tmp_path / "a"))
    assert root == os.path.join(str(tmp_path / "a"), "static", config.key())
    stamp = os.path.getmtime(os.path.join(root, "train", "r_1.png"))
    assert ensure_mesh_views(config, cache_dir=str(tmp_path / "a")) == root  # cached: not rewritten
    assert os.path.getmtime(os.path.join(root, "train", "r_1.png")) == stamp
    assert not [n for n in os.listdir(os.path.dirname(root)) if n != config.key()]  # no temporaries left
    other = ensure_mesh_views(config, cache_dir=str(tmp_path / "b"))
    for split in ("train", "val"):
        a, b = load_blender(root, split), load_blender(other, split)
        assert torch.equal(a.images, b.images) and torch.equal(a.silhouettes, b.silhouettes)
    train, val = load_blender(root, "train"), load_blender(root, "val")
    assert (len(train), len(val)) == (4, 2) and train.image_size == (16, 16)
    assert 0.05 < float(train.silhouettes.mean()) < 0.9  # the object is in view, not filling it
    # The loaded cameras are the renderer's FoV cameras: same screen positions for world points.
    R, T = orbit_views(config)
    fov = FoVPerspectiveCameras(R=R, T=T, fov=config.fov)
    points = torch.rand(1, 30, 3) * 2 - 1
    want = fov.transform_points_screen(points.expand(6, -1, -1), image_size=((16, 16),))[..., :2]
    got_train = train.cameras.transform_points_screen(points.expand(4, -1, -1))[..., :2]
    got_val = val.cameras.transform_points_screen(points.expand(2, -1, -1))[..., :2]
    torch.testing.assert_close(got_val, want[[0, 3]], atol=1e-3, rtol=0)
    torch.testing.assert_close(got_train, want[[1, 2, 4, 5]], atol=1e-3, rtol=0)
