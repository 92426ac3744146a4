"""RAD-NeRF torso data: RGBA torso_imgs loaded lazily and checked at load, torso over bc.jpg,
the torso's pose vector (convert_poses) and pixel coordinates (bg_coords); parsing/ head masks."""

import math
import os
import pickle

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from pt3d_radnerf.data import TalkingHeadDataset, bg_coords, convert_poses, nerf_matrix_to_ngp, read_image
from tests.test_talking_head_data import H, POSES, W, make_folder


def write_torso_folder(root, n=6, seed=1):
    """make_folder plus a textured bc.jpg and RGBA torso_imgs/<i>.png (alpha 0, 255 and between);
    returns the (n, H, W, 4) uint8 torso pixels written."""
    make_folder(root, n=n)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:H, 0:W]
    bc = np.stack([rows * 5, cols * 4, 255 - rows * 3], -1).clip(0, 255).astype(np.uint8)
    imageio.imwrite(os.path.join(root, "bc.jpg"), bc)
    os.makedirs(os.path.join(root, "torso_imgs"))
    torsos = rng.integers(0, 256, (n, H, W, 4), dtype=np.uint8)
    torsos[:, : H // 3, :, 3] = 0  # no torso above the shoulders
    torsos[:, -4:, :, 3] = 255  # opaque at the bottom
    for i in range(n):
        imageio.imwrite(os.path.join(root, "torso_imgs", f"{i}.png"), torsos[i])
    return torsos


def test_torso_over_background_is_alpha_blending(tmp_path):
    root = str(tmp_path)
    torsos = write_torso_folder(root)
    ds = TalkingHeadDataset(root, cache_size=2)
    assert ds.has_torso
    bc = read_image(os.path.join(root, "bc.jpg")).double().numpy()
    for i in (4, 0):
        rgba = torsos[i].astype(np.float64) / 255.0
        want = rgba[..., :3] * rgba[..., 3:] + bc * (1.0 - rgba[..., 3:])
        got = ds.torso_background(i)
        assert got.shape == (H, W, 3) and got.dtype == torch.float32
        np.testing.assert_allclose(got.double().numpy(), want, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(ds.torso_rgba(i).numpy(), torsos[i].astype(np.float32) / 255.0)
        torch.testing.assert_close(ds.head_background(i), got)
    # Transparent rows show bc.jpg exactly; opaque rows show the torso exactly.
    torch.testing.assert_close(ds.torso_background(1)[: H // 3], ds.background[: H // 3])
    np.testing.assert_allclose(ds.torso_background(1)[-4:].numpy(), torsos[1, -4:, :, :3] / 255.0, atol=1e-6)
    # Bounded uint8 LRU, like the frames; not preloaded.
    ds.torso_rgba(2), ds.torso_rgba(3)
    assert list(ds._torso_cache) == [2, 3] and ds._torso_cache[3].dtype == np.uint8
    assert ds._torso_cache[3].shape == (H, W, 4)


def test_torso_prefetch_and_workers(tmp_path):
    root = str(tmp_path)
    torsos = write_torso_folder(root)
    ds = TalkingHeadDataset(root, cache_size=3, prefetch_workers=2)
    ds.prefetch([1, 2])
    assert set(ds._torso_pending) <= {1, 2}
    for i in (2, 1):
        np.testing.assert_array_equal(ds.torso_rgba(i).numpy(), torsos[i] / np.float32(255.0))
    assert not ds._torso_pending and list(ds._torso_cache) == [2, 1]
    copy = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker gets: no threads, empty caches
    assert not copy._torso_cache and copy.has_torso
    torch.testing.assert_close(copy.torso_background(5), ds.torso_background(5))
    ds.close()


def test_without_torso_folder(tmp_path):
    root = str(tmp_path)
    make_folder(root)
    ds = TalkingHeadDataset(root)
    assert not ds.has_torso
    torch.testing.assert_close(ds.head_background(0), ds.background)
    with pytest.raises(ValueError, match="torso_imgs does not exist"):
        ds.torso_background(0)
    with pytest.raises(FileNotFoundError, match="torso=True.*torso_imgs"):
        TalkingHeadDataset(root, torso=True)
    with pytest.raises(ValueError, match="torso must be"):
        TalkingHeadDataset(root, torso="yes")
    root = str(tmp_path / "ignored")
    write_torso_folder(root)
    ds = TalkingHeadDataset(root, torso=False)
    assert not ds.has_torso and torch.equal(ds.head_background(0), ds.background)
    with pytest.raises(ValueError, match="torso=False"):
        ds.torso_rgba(0)


def test_torso_errors_name_file_and_frame(tmp_path):
    root = str(tmp_path / "missing")
    write_torso_folder(root)
    os.remove(os.path.join(root, "torso_imgs", "3.png"))
    with pytest.raises(FileNotFoundError, match=r"torso_imgs/3\.png \(frame 3 of .*transforms_train\.json; 1 of 6"):
        TalkingHeadDataset(root)  # at load, not when frame 3 is drawn
    assert not TalkingHeadDataset(root, torso=False).has_torso  # the way out the message names

    root = str(tmp_path / "size")
    write_torso_folder(root)
    imageio.imwrite(os.path.join(root, "torso_imgs", "4.png"), np.zeros((H, W + 2, 4), np.uint8))
    with pytest.raises(ValueError, match=rf"torso_imgs/4\.png \(frame 4 of .*\) is \({H}, {W + 2}\)"):
        TalkingHeadDataset(root)

    root = str(tmp_path / "rgb")
    write_torso_folder(root)
    imageio.imwrite(os.path.join(root, "torso_imgs", "2.png"), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match=r"torso_imgs/2\.png \(frame 2 of .*\) has no alpha channel"):
        TalkingHeadDataset(root)

    root = str(tmp_path / "corrupt")  # a truncated file passes the header check; decoding names it
    write_torso_folder(root)
    path = os.path.join(root, "torso_imgs", "5.png")
    with open(path, "r+b") as f:
        f.truncate(200)
    ds = TalkingHeadDataset(root)
    with pytest.raises(ValueError, match=r"torso_imgs/5\.png"):
        ds.torso_background(5)


# RAD-NeRF's parsing colours by class: 0 background, 1 head, 2 neck, 3 torso.
PARSING_COLORS = np.array([[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.int16)


def write_parsing(root, n=6, seed=2, noise=0, block=1):
    """parsing/<i>.png of random class maps, one class per block x block pixels (with +-noise per
    channel, as a JPEG round trip leaves); returns the (n, H, W) int class labels written."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (n, -(-H // block), -(-W // block)))
    labels = labels.repeat(block, 1).repeat(block, 2)[:, :H, :W]
    os.makedirs(os.path.join(root, "parsing"))
    for i in range(n):
        rgb = PARSING_COLORS[labels[i]] + rng.integers(-noise, noise + 1, (H, W, 3))
        imageio.imwrite(os.path.join(root, "parsing", f"{i}.png"), rgb.clip(0, 255).astype(np.uint8))
    return labels


@pytest.mark.parametrize("noise", [0, 25])
def test_head_mask_is_the_red_class(tmp_path, noise):
    root = str(tmp_path)
    make_folder(root)
    labels = write_parsing(root, noise=noise)
    # Colours near but not at red are not head: orange, magenta, dark red.
    for rgb in ([255, 128, 0], [255, 0, 255], [128, 0, 0]):
        path = os.path.join(root, "parsing", "5.png")
        img = imageio.imread(path)
        img[0, 0] = rgb
        imageio.imwrite(path, img)
        labels[5, 0, 0] = 0
    ds = TalkingHeadDataset(root, cache_size=2, prefetch_workers=1)
    assert ds.has_parsing
    ds.prefetch([0, 1])
    for i in (1, 0, 5, 3):
        mask = ds.head_mask(i)
        assert mask.shape == (H, W) and mask.dtype == torch.bool
        assert torch.equal(mask, torch.from_numpy(labels[i] == 1)), i  # neck and torso are not head
    assert list(ds._parsing_cache) == [5, 3] and ds._parsing_cache[3].dtype == np.bool_  # bounded LRU
    ds.head_mask(3)[:] = False  # callers get a copy; the cache keeps the mask
    assert torch.equal(ds.head_mask(3), torch.from_numpy(labels[3] == 1))
    copy = pickle.loads(pickle.dumps(ds))  # DataLoader workers: no threads, empty caches
    assert not copy._parsing_cache and torch.equal(copy.head_mask(4), torch.from_numpy(labels[4] == 1))
    ds.close()


def test_parsing_absent_or_broken(tmp_path):
    root = str(tmp_path / "none")
    make_folder(root)
    ds = TalkingHeadDataset(root)
    assert not ds.has_parsing
    with pytest.raises(ValueError, match=rf"head_mask needs .*{os.path.join(root, 'parsing')}"):
        ds.head_mask(0)

    root = str(tmp_path / "missing")
    make_folder(root)
    write_parsing(root)
    os.remove(os.path.join(root, "parsing", "2.png"))
    with pytest.raises(FileNotFoundError, match=r"parsing/2\.png \(frame 2 of .*transforms_train\.json; 1 of 6"):
        TalkingHeadDataset(root)  # at load, not when frame 2 is drawn

    root = str(tmp_path / "size")
    make_folder(root)
    write_parsing(root)
    imageio.imwrite(os.path.join(root, "parsing", "4.png"), np.zeros((H - 1, W, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"parsing/4\.png \(frame 4 of .*\) is \({H - 1}, {W}\)"):
        TalkingHeadDataset(root)

    root = str(tmp_path / "corrupt")
    make_folder(root)
    write_parsing(root)
    with open(os.path.join(root, "parsing", "1.png"), "r+b") as f:
        f.truncate(100)
    ds = TalkingHeadDataset(root)
    with pytest.raises(ValueError, match=r"parsing/1\.png"):
        ds.head_mask(1)


def rotation(axis, angle):
    c, s = math.cos(angle), math.sin(angle)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=torch.float64)


@pytest.mark.parametrize("angles", [(0.3, -0.2, 0.1), (-1.2, 0.7, 2.5), (0.0, 0.0, 0.0), (3.0, -1.4, -2.9)])
def test_convert_poses_xyz_euler(angles):
    # Hand-made R = Rx(a) Ry(b) Rz(c) with b in (-pi/2, pi/2): the angles come back exactly.
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = rotation("x", angles[0]) @ rotation("y", angles[1]) @ rotation("z", angles[2])
    c2w[:3, 3] = torch.tensor([0.5, -1.0, 2.8])
    got = convert_poses(c2w[None])
    assert got.shape == (1, 6) and got.dtype == torch.float64
    torch.testing.assert_close(got[0], torch.tensor([*angles, 0.5, -1.0, 2.8], dtype=torch.float64))
    with pytest.raises(ValueError, match="c2w"):
        convert_poses(torch.eye(3))


def test_dataset_torso_poses_in_radnerf_world(tmp_path):
    root = str(tmp_path)
    make_folder(root)
    ds = TalkingHeadDataset(root)
    c2w = nerf_matrix_to_ngp(POSES[torch.arange(6) % 3])  # RAD-NeRF's world (scale 4)
    assert ds.torso_poses.shape == (6, 6) and ds.torso_poses.dtype == torch.float32
    for i in range(6):
        a, b, c = ds.torso_poses[i, :3].double().tolist()
        rebuilt = rotation("x", a) @ rotation("y", b) @ rotation("z", c)
        torch.testing.assert_close(rebuilt, c2w[i, :3, :3], atol=1e-6, rtol=0)
        torch.testing.assert_close(ds.torso_poses[i, 3:].double(), c2w[i, :3, 3], atol=1e-6, rtol=0)
    assert torch.equal(ds[4]["torso_pose"], ds.torso_poses[4])


def test_bg_coords_radnerf_order():
    coords = bg_coords(3, 5)
    assert coords.shape == (3, 5, 2)
    assert coords[0, 0].tolist() == [-1.0, -1.0] and coords[2, 4].tolist() == [1.0, 1.0]
    assert coords[1, 2].tolist() == [0.0, 0.0] and coords[0, 1].tolist() == [-1.0, -0.5]
    flat = coords.reshape(-1, 2)  # RAD-NeRF's (H * W, 2): first component the row, row-major
    assert flat[5].tolist() == [0.0, -1.0] and flat[4].tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="height and width >= 2"):
        bg_coords(1, 5)
