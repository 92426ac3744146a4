"""Corrupted copies of a RAD-NeRF folder: each defect is refused when the dataset is built (not when
the frame is first drawn), with an error naming the file and, for per-frame data, the frame.

The valid folder follows RAD-NeRF's preprocessing output exactly: transforms with focal_len/cx/cy
and no w/h (the size is 2 * int(cx) by 2 * int(cy)), gt_imgs/<img_id>.jpg, ori_imgs/<img_id>.lms,
bc.jpg, a DeepSpeech aud.npy (N, 16, 29) as RAD-NeRF's process.py writes it, and OpenFace's au.csv.
"""

import json
import os
import shutil

import imageio.v2 as imageio
import numpy as np
import pytest

from pt3d_radnerf.data import TalkingHeadDataset

N, SIZE = 5, 48  # frames; square image side (cx = cy = SIZE / 2)
BAD_FRAME = 3  # the frame each per-frame case corrupts (img_id = BAD_FRAME + 10)


def landmarks(shift=0.0):
    """68 "x y" landmarks inside a SIZE x SIZE image, with non-degenerate eye and lip polygons."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lms = np.stack([24 + 12 * np.cos(t), 26 + 14 * np.sin(t)], 1) + shift
    eye = np.array([[-3, 0], [-1, -1.5], [1, -1.5], [3, 0], [1, 1.5], [-1, 1.5]])
    lms[36:42], lms[42:48] = eye + [16, 20], eye + [32, 20]
    lms[48:60] = np.array([[-5, 0], [0, -2], [5, 0], [0, 3]] * 3) + [24, 34]
    return lms


def au_csv(values):
    header = "frame, face_id, timestamp, confidence, success, AU01_r, AU45_r, AU45_c"
    rows = [f"{i + 1}, 0, {i * 0.04:.2f}, 0.98, 1, 0.1, {v}, 1" for i, v in enumerate(values)]
    return "\n".join([header] + rows) + "\n"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("valid"))
    os.makedirs(os.path.join(root, "gt_imgs"))
    os.makedirs(os.path.join(root, "ori_imgs"))
    rng = np.random.default_rng(0)
    frames = []
    for k in range(N):
        img_id = k + 10  # ids need not start at 0 (a val split does not)
        imageio.imwrite(os.path.join(root, "gt_imgs", f"{img_id}.jpg"),
                        rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
        np.savetxt(os.path.join(root, "ori_imgs", f"{img_id}.lms"), landmarks(k * 0.5), fmt="%.2f")
        pose = np.eye(4)
        pose[:3, 3] = [0.01 * k, 0.0, 0.7]
        frames.append({"img_id": img_id, "aud_id": img_id, "transform_matrix": pose.tolist()})
    imageio.imwrite(os.path.join(root, "bc.jpg"), np.full((SIZE, SIZE, 3), 200, dtype=np.uint8))
    np.save(os.path.join(root, "aud.npy"), rng.random((N + 10, 16, 29)).astype(np.float32))
    with open(os.path.join(root, "au.csv"), "w") as f:
        f.write(au_csv(np.linspace(0.0, 3.0, N + 10).round(2)))
    meta = {"focal_len": 60.0, "cx": SIZE / 2, "cy": SIZE / 2, "frames": frames}
    for split in ("train", "val"):
        with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
            json.dump(meta, f, indent=2)
    return root


def test_valid_folder_loads(valid):
    ds = TalkingHeadDataset(valid)
    assert (ds.height, ds.width) == (SIZE, SIZE) and len(ds) == N
    assert ds.audio_features.shape == (N + 10, 16, 29)  # DeepSpeech aud.npy, typed by its shape
    assert ds.aud_index.tolist() == list(range(10, 10 + N))
    assert TalkingHeadDataset(valid, eye_source="au").eye.shape == (N,)
    assert ds[BAD_FRAME]["image"].shape == (SIZE, SIZE, 3)


# ---- corruptions: each edits a copy of the valid folder -----------------------------------------
def edit_json(key_path, value=None, delete=False):
    """Sets (or deletes) meta[...] at key_path, e.g. ("frames", 3, "img_id")."""
    def apply(root):
        path = os.path.join(root, "transforms_train.json")
        with open(path) as f:
            meta = json.load(f)
        node = meta
        for key in key_path[:-1]:
            node = node[key]
        if delete:
            del node[key_path[-1]]
        else:
            node[key_path[-1]] = value
        with open(path, "w") as f:
            json.dump(meta, f)  # writes NaN / Infinity for non-finite floats, as Python's json does
    return apply


def write_image(name, shape):
    def apply(root):
        imageio.imwrite(os.path.join(root, name), np.zeros(shape, dtype=np.uint8))
    return apply


def remove(name):
    return lambda root: os.remove(os.path.join(root, name))


def write_text(name, text):
    def apply(root):
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    return apply


def move_landmark(index, x, y):
    def apply(root):
        path = os.path.join(root, "ori_imgs", f"{BAD_FRAME + 10}.lms")
        lms = np.loadtxt(path)
        lms[index] = [x, y]
        np.savetxt(path, lms, fmt="%.2f")
    return apply


def pose_with(value):
    pose = np.eye(4).tolist()
    pose[1][3] = value
    return pose


JSON = "transforms_train.json"
IMG = f"gt_imgs/{BAD_FRAME + 10}.jpg"
LMS = f"ori_imgs/{BAD_FRAME + 10}.lms"
FRAME = f"frame {BAD_FRAME}"
F = ("frames", BAD_FRAME)

# (case id, corruption, constructor kwargs, error type, file named, further words the message must hold)
CASES = [
    ("nan_pose", edit_json(F + ("transform_matrix",), pose_with(float("nan"))), {}, ValueError, JSON, [FRAME, "finite"]),
    ("inf_pose", edit_json(F + ("transform_matrix",), pose_with(float("inf"))), {}, ValueError, JSON, [FRAME, "finite"]),
    ("ragged_matrix", edit_json(F + ("transform_matrix",), [[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
     {}, ValueError, JSON, [FRAME, "4 rows of 4"]),
    ("matrix_3x4", edit_json(F + ("transform_matrix",), np.eye(4)[:3].tolist()), {}, ValueError, JSON,
     [FRAME, "4 rows of 4"]),
    ("text_in_matrix", edit_json(F + ("transform_matrix",), pose_with("0.1")), {}, ValueError, JSON, [FRAME]),
    ("no_transform_matrix", edit_json(F + ("transform_matrix",), delete=True), {}, ValueError, JSON,
     [FRAME, "'transform_matrix'"]),
    ("no_img_id", edit_json(F + ("img_id",), delete=True), {}, ValueError, JSON, [FRAME, "'img_id'"]),
    ("text_img_id", edit_json(F + ("img_id",), "a"), {}, ValueError, JSON, [FRAME, "'img_id'"]),
    ("float_img_id", edit_json(F + ("img_id",), 13.5), {}, ValueError, JSON, [FRAME, "'img_id'"]),
    ("text_cx", edit_json(("cx",), "abc"), {}, ValueError, JSON, ["'cx'"]),
    ("null_focal_len", edit_json(("focal_len",), None), {}, ValueError, JSON, ["'focal_len'"]),
    ("negative_focal_len", edit_json(("focal_len",), -60.0), {}, ValueError, JSON, ["'focal_len'"]),
    ("negative_aud_id", edit_json(F + ("aud_id",), -1), {}, ValueError, JSON, [FRAME, "'aud_id'"]),
    ("text_aud_id", edit_json(F + ("aud_id",), "13"), {}, ValueError, JSON, [FRAME, "'aud_id'"]),
    ("aud_id_past_audio", edit_json(F + ("aud_id",), 40), {}, ValueError, JSON, [FRAME, "aud_id 40", "aud.npy"]),
    ("missing_image", remove(IMG), {}, FileNotFoundError, IMG, [FRAME]),
    ("image_wrong_size", write_image(IMG, (SIZE, SIZE + 8, 3)), {}, ValueError, IMG, [FRAME]),
    ("image_not_a_jpeg", write_text(IMG, "not an image"), {}, ValueError, IMG, []),
    ("missing_landmarks", remove(LMS), {}, FileNotFoundError, LMS, [FRAME]),
    ("landmarks_truncated", write_text(LMS, "10 12\n11 13\n"), {}, ValueError, LMS, [FRAME, "68"]),
    ("landmark_nan", move_landmark(7, float("nan"), 20.0), {}, ValueError, LMS, [FRAME, "finite"]),
    ("landmark_left_of_image", move_landmark(5, -3.0, 20.0), {}, ValueError, LMS, [FRAME, "outside"]),
    ("landmark_below_image", move_landmark(40, 20.0, SIZE + 2.0), {}, ValueError, LMS, [FRAME, "outside"]),
    ("bc_larger", write_image("bc.jpg", (SIZE + 16, SIZE + 16, 3)), {}, ValueError, "bc.jpg", ["size"]),
    ("bc_smaller", write_image("bc.jpg", (SIZE // 2, SIZE // 2, 3)), {}, ValueError, "bc.jpg", ["size"]),
    ("missing_bc", remove("bc.jpg"), {}, FileNotFoundError, "bc.jpg", []),
    ("au_missing", remove("au.csv"), {"eye_source": "au"}, FileNotFoundError, "au.csv", ["AU45_r"]),
    ("au_no_column", write_text("au.csv", "frame, face_id, AU01_r\n1, 0, 0.5\n"), {"eye_source": "au"},
     ValueError, "au.csv", ["AU45_r"]),
    ("au_too_few_rows", write_text("au.csv", au_csv([0.5] * 13)), {"eye_source": "au"}, ValueError, "au.csv",
     [FRAME, "img_id 13"]),
    ("au_text_value", write_text("au.csv", au_csv([0.5] * 8 + ["x"] + [0.5] * 6)), {"eye_source": "au"},
     ValueError, "au.csv", ["row 8", "AU45_r"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_corruption_is_refused_at_load(case, valid, tmp_path):
    _, corrupt, kwargs, error, bad_file, words = case
    root = str(tmp_path / "copy")
    shutil.copytree(valid, root)
    corrupt(root)
    with pytest.raises(error) as info:
        TalkingHeadDataset(root, "train", **kwargs)
    message = str(info.value)
    for needle in [os.path.join(root, bad_file)] + words:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_bad_split_does_not_hide_behind_the_good_one(valid, tmp_path):
    # Only the val json is corrupted: train loads, val is refused naming its own file.
    root = str(tmp_path / "copy")
    shutil.copytree(valid, root)
    path = os.path.join(root, "transforms_val.json")
    with open(path) as f:
        meta = json.load(f)
    meta["frames"][1]["transform_matrix"][0][0] = float("nan")
    with open(path, "w") as f:
        json.dump(meta, f)
    TalkingHeadDataset(root, "train")
    with pytest.raises(ValueError, match=r"transforms_val.json: frame 1 \(img_id 11\)"):
        TalkingHeadDataset(root, "val")
