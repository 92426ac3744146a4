"""RAD-NeRF folders: exact camera conversion, landmark regions, lazy loading, clear errors."""

import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from pt3d_radnerf.data import (TalkingHeadDataset, eye_area, lips_rect, lower_face_rect, read_image,
                               nerf_matrix_to_ngp, project_radnerf, radnerf_cameras)


def look_at_opengl(eye, target=(0.0, 0.0, 0.0)):
    """OpenGL camera-to-world (camera looks down -z, +y up) at `eye` looking at `target`."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    f = torch.as_tensor(target, dtype=torch.float64) - eye
    f = f / f.norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    r = r / r.norm()
    u = torch.linalg.cross(r, f)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, eye
    return m


POSES = torch.stack([look_at_opengl([0.1, 0.05, 0.7]), look_at_opengl([-0.2, 0.1, 0.65]),
                     look_at_opengl([0.0, -0.1, 0.75])])
W, H, FX, FY, CX, CY = 64, 48, 70.0, 72.0, 33.0, 23.5


def test_nerf_matrix_to_ngp_axes():
    pose = torch.arange(16, dtype=torch.float64).view(4, 4)
    out = nerf_matrix_to_ngp(pose, scale=2.0, offset=(1.0, 0.0, 0.0))
    # rows cycle (1, 2, 0); camera y/z columns flip; translation scaled + offset.
    assert out[0, :3].tolist() == [4.0, -5.0, -6.0] and out[0, 3].item() == 7.0 * 2 + 1
    assert out[1, :3].tolist() == [8.0, -9.0, -10.0] and out[2, :3].tolist() == [0.0, -1.0, -2.0]
    assert out[3].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_cameras_project_like_radnerf():
    cams = radnerf_cameras(POSES, FX, FY, CX, CY, W, H)
    c2w = nerf_matrix_to_ngp(POSES)
    pts = (torch.rand(200, 3, dtype=torch.float64) - 0.5) * torch.tensor([2.0, 1.0, 2.0]) * 0.8
    for b in range(len(POSES)):
        want = project_radnerf(pts, c2w[b], FX, FY, CX, CY)
        got = cams[b].transform_points_screen(pts[None].float())[0, :, :2].double()
        torch.testing.assert_close(got, want, atol=1e-3, rtol=0)


def test_radnerf_rays_unproject_to_their_pixels():
    # The other way: RAD-NeRF's ray through pixel (col, row) projects back onto that pixel centre.
    cams = radnerf_cameras(POSES, FX, FY, CX, CY, W, H)
    c2w = nerf_matrix_to_ngp(POSES)[0]
    cols, rows = torch.meshgrid(torch.arange(0, W, 7.0), torch.arange(0, H, 5.0), indexing="xy")
    u, v = cols.flatten().double() + 0.5, rows.flatten().double() + 0.5
    dirs_cam = torch.stack([(u - CX) / FX, (v - CY) / FY, torch.ones_like(u)], -1)
    points = c2w[:3, 3] + 2.5 * dirs_cam @ c2w[:3, :3].T
    got = cams[0].transform_points_screen(points[None].float())[0, :, :2].double()
    torch.testing.assert_close(got, torch.stack([u, v], -1), atol=1e-3, rtol=0)


def synthetic_landmarks():
    lms = np.zeros((68, 2))
    lms[:, 0] = np.linspace(10, 50, 68)
    lms[:, 1] = np.linspace(8, 40, 68)
    lms[36:42] = [[20, 15], [22, 13], [24, 13], [26, 15], [24, 17], [22, 17]]  # 16 px^2 hexagon
    lms[42:48] = lms[36:42] + [14, 0]
    lms[48:60] = [[25, 30], [30, 28], [35, 30], [30, 34]] * 3
    return lms


def test_landmark_regions():
    lms = synthetic_landmarks()
    assert lower_face_rect(lms) == (10, 50, int(lms[31:36, 1].min()), 40)
    x0, x1, y0, y1 = lips_rect(lms, W, H)
    # lips span x 25..35, y 28..34: centre (30, 31), half-size 5 -> square 25..35 x 26..36
    assert (x0, x1, y0, y1) == (25, 35, 26, 36)
    # Each eye hexagon: a 2x4 rectangle (x 22..24) plus two triangles of base 4 and height 2 = 16 px^2.
    assert eye_area(lms, W, H) == pytest.approx(2 * 16.0 / (W * H) * 100)


def make_folder(root, n=6, feature="aud_ds.npy", width=29, n_audio=None):
    os.makedirs(os.path.join(root, "gt_imgs"))
    os.makedirs(os.path.join(root, "ori_imgs"))
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        imageio.imwrite(os.path.join(root, "gt_imgs", f"{i}.jpg"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        np.savetxt(os.path.join(root, "ori_imgs", f"{i}.lms"), synthetic_landmarks())
        frames.append({"img_id": i, "aud_id": i, "transform_matrix": POSES[i % 3].tolist()})
    imageio.imwrite(os.path.join(root, "bc.jpg"), np.full((H, W, 3), 255, dtype=np.uint8))
    np.save(os.path.join(root, feature), rng.random((n if n_audio is None else n_audio, 16, width)).astype(np.float32))
    meta = {"focal_len": FX, "cx": CX, "cy": CY, "w": W, "h": H, "frames": frames}
    for split in ("train", "val"):
        with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
            json.dump(meta, f)
    return meta


def test_dataset_items(tmp_path):
    make_folder(str(tmp_path))
    ds = TalkingHeadDataset(str(tmp_path), cache_size=2)
    assert len(ds) == 6 and ds.audio_features.shape == (6, 16, 29)
    item = ds[4]
    assert item["image"].shape == (H, W, 3) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["R"].shape == (3, 3) and item["aud_index"] == 4
    assert len(ds._cache) <= 2  # bounded LRU, not a preload
    ds[0], ds[1], ds[2]
    assert len(ds._cache) == 2
    window = ds.audio_window(0)
    assert window.shape == (8, 16, 29) and window[:4].abs().sum() == 0  # padded before frame 0
    cams = ds.cameras([0, 3])
    torch.testing.assert_close(cams.R, ds.R[[0, 3]])
    assert ds.background.shape == (H, W, 3)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms_train.json"):
        TalkingHeadDataset(str(tmp_path / "nothing"))
    root = str(tmp_path / "short")
    make_folder(root, n_audio=2)  # audio covers 2 of 6 frames
    with pytest.raises(ValueError, match=r"frame 4 \(img_id 4\) has aud_id 4.*aud_ds.npy\) cover 2 frames"):
        TalkingHeadDataset(root)
    root = str(tmp_path / "slack")
    make_folder(root, n_audio=5)  # one frame short: clamped
    assert TalkingHeadDataset(root).aud_index.tolist() == [0, 1, 2, 3, 4, 4]
    root = str(tmp_path / "wrongwidth")
    make_folder(root, feature="aud_eo.npy", width=29)
    with pytest.raises(ValueError, match="'esperanto'"):
        TalkingHeadDataset(root)
    root = str(tmp_path / "missingimg")
    make_folder(root)
    os.remove(os.path.join(root, "gt_imgs", "3.jpg"))
    with pytest.raises(FileNotFoundError, match="3.jpg"):  # at load, not when frame 3 is drawn
        TalkingHeadDataset(root)
    root = str(tmp_path / "fps")
    meta = make_folder(root)
    meta["fps"] = 30
    with open(os.path.join(root, "transforms_train.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match="25 fps"):
        TalkingHeadDataset(root)
    root = str(tmp_path / "badlms")
    make_folder(root)
    with open(os.path.join(root, "ori_imgs", "2.lms"), "w") as f:
        f.write("1 2\n")
    with pytest.raises(ValueError, match="2.lms"):
        TalkingHeadDataset(root)


def write_au_csv(path, values, column=" AU45_r"):
    # OpenFace's layout: a space after each comma, in the header too.
    header = ["frame", " face_id", " timestamp", " confidence", " success", " AU01_r", column, " AU45_c"]
    lines = [",".join(header)]
    lines += [f"{i + 1}, 0, {i * 0.04:.2f}, 0.98, 1, 0.3, {v}, 1" for i, v in enumerate(values)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("column", [" AU45_r", "AU45_r"])
def test_eye_from_openface_au45(tmp_path, column):
    root = str(tmp_path)
    meta = make_folder(root)
    meta["frames"] = meta["frames"][::-1]  # frames in another order than the csv rows
    with open(os.path.join(root, "transforms_train.json"), "w") as f:
        json.dump(meta, f)
    values = [-0.4, 0.0, 0.7, 1.5, 2.0, 3.9]  # row i = img_id i
    write_au_csv(os.path.join(root, "au.csv"), values, column)
    ds = TalkingHeadDataset(root, eye_source="au")
    want = [min(max(values[fr["img_id"]], 0.0), 2.0) / 2.0 for fr in meta["frames"]]  # ER-NeRF's clip(AU45, 0, 2) / 2
    torch.testing.assert_close(ds.eye, torch.tensor(want))
    assert ds[1]["eye"] == ds.eye[1]
    landmarks = TalkingHeadDataset(root)  # the default stays RAD-NeRF's landmark eye area
    assert landmarks.eye[0] == pytest.approx(eye_area(synthetic_landmarks(), W, H))
    with pytest.raises(ValueError, match="eye_source"):
        TalkingHeadDataset(root, eye_source="blink")


def test_prefetch_and_dataloader(tmp_path):
    make_folder(str(tmp_path))
    ds = TalkingHeadDataset(str(tmp_path), cache_size=3, prefetch_workers=2)
    direct = [read_image(os.path.join(str(tmp_path), "gt_imgs", f"{i}.jpg")) for i in range(6)]
    ds.prefetch([1, 2, 3])
    assert set(ds._pending) <= {1, 2, 3}
    for i in (1, 2, 3, 0, 4):
        assert torch.equal(ds.image(i), direct[i])
    assert not ds._pending and list(ds._cache) == [3, 0, 4]  # bounded LRU of decoded uint8 frames
    assert ds._cache[4].dtype == np.uint8
    # Workers get a picklable copy without threads or cache.
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, [0, 1, 2, 3]), batch_size=2, num_workers=1)
    batches = list(loader)
    assert batches[1]["image"].shape == (2, H, W, 3)
    assert torch.equal(batches[1]["image"][1], direct[3])
    # A decode error surfaces from the prefetch thread with the file name.
    with open(os.path.join(str(tmp_path), "gt_imgs", "5.jpg"), "r+b") as f:
        f.truncate(300)
    ds.prefetch(5)
    with pytest.raises(ValueError, match="5.jpg"):
        ds.image(5)
    ds.close()
