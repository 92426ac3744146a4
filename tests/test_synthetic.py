"""The built-in synthetic talking head: RAD-NeRF's full layout (torso images, parsing, au.csv,
textured bc.jpg), renders that match PyTorch3D's mesh renderer, determinism, audio-driven mouth,
atomic cache."""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from pt3d_radnerf.atomic import TEMP_PREFIX
from pt3d_radnerf.audio import read_audio
from pt3d_radnerf.data import TalkingHeadDataset, read_au45, read_image, radnerf_cameras
from pt3d_radnerf.data import synthetic
from pt3d_radnerf.data.head_mesh import build_head, build_torso
from pt3d_radnerf.training import pearson

LAYOUT = ("aud.wav", "au.csv", "bc.jpg", "transforms_train.json", "transforms_val.json", "mouth_openness.npy",
          "eye_openness.npy", "config.json")
PER_FRAME = ("gt_imgs/{}.jpg", "torso_imgs/{}.png", "parsing/{}.png", "ori_imgs/{}.lms")

CONFIG = synthetic.SyntheticConfig(size=64, seconds=2.0, seed=3)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path_factory.mktemp("cache")), progress=False)


def test_layout_and_loader(dataset_root):
    for name in LAYOUT + tuple(p.format(i) for p in PER_FRAME for i in range(50)):
        assert os.path.isfile(os.path.join(dataset_root, name)), name
    train = TalkingHeadDataset(dataset_root, "train")
    val = TalkingHeadDataset(dataset_root, "val")
    assert len(train) + len(val) == 50 and len(val) == 6
    assert train.has_torso and train.has_parsing and val.has_torso and val.has_parsing
    assert train.audio_features.shape == (50, 16, 80)  # log-mel computed from aud.wav
    item = val[0]
    assert item["image"].shape == (64, 64, 3) and item["aud_index"] == 44
    # bc.jpg is textured: smooth, but far from flat.
    bc = train.background
    assert bc.std(dim=(0, 1)).min() > 0.02 and (bc[1:] - bc[:-1]).abs().max() < 0.05


def test_parsing_torso_and_frames_agree(dataset_root):
    ds = TalkingHeadDataset(dataset_root, "train")
    for i in (0, 17, 43):
        parsing = torch.from_numpy(imageio.imread(os.path.join(dataset_root, "parsing", f"{i}.png")))
        labels = torch.full(parsing.shape[:2], -1)
        for label, rgb in enumerate(synthetic.PARSING_COLORS):
            labels[(parsing == torch.from_numpy(rgb)).all(-1)] = label
        assert (labels >= 0).all()  # PNG: the four colours exactly
        assert torch.equal(ds.head_mask(i), labels == 1)
        assert (labels == 1).float().mean() > 0.2 and (labels >= 2).float().mean() > 0.1
        rgba = torch.from_numpy(imageio.imread(os.path.join(dataset_root, "torso_imgs", f"{i}.png")))
        alpha = rgba[..., 3]
        assert set(alpha.unique().tolist()) == {0, 255}
        assert (alpha[labels >= 2] == 255).all() and (alpha[labels == 0] == 0).all()
        assert (alpha[labels == 1] == 255).any()  # the torso continues behind the head
        # The frame is the head over the torso over bc.jpg (up to JPEG noise).
        frame, torso_bg = ds.image(i), ds.torso_background(i)
        err = (frame - torso_bg).abs().mean(-1)
        assert err[labels != 1].mean() < 0.01 and err[labels == 1].mean() > 0.1
        assert (frame - ds.background).abs().mean(-1)[labels == 0].mean() < 0.01


def test_torso_moves_differently_from_the_head():
    """Frames at the head's extreme yaws and pitches: in the image the face (its landmarks) moves,
    the torso (its silhouette's centre) hardly: it turns a fraction of the head's yaw, none of its
    pitch."""
    size = 128
    angles, shift = np.array([[3.0, 2.0], [-3.0, -2.0]]), np.zeros((2, 3))
    poses = synthetic.camera_poses(angles, shift)
    to_head = synthetic.torso_transforms(poses, angles)
    cams = radnerf_cameras(torch.from_numpy(poses), 1.1 * size, 1.1 * size, size / 2, size / 2, size, size)
    raster = synthetic.Rasterizer(size)
    frames = [synthetic.render_frame(raster, cams[i], 0.0, 1.0, to_head[i]) for i in range(2)]
    face = [f.landmarks.double().mean(0) for f in frames]  # (x, y)
    rows, cols = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    torso = [torch.stack([(cols * f.torso_alpha).sum(), (rows * f.torso_alpha).sum()]).double() / f.torso_alpha.sum()
             for f in frames]
    face_move, torso_move = (face[1] - face[0]).abs(), (torso[1] - torso[0]).abs()
    assert (face_move > 1.0).all(), face_move
    assert (torso_move < 0.25 * face_move).all(), (torso_move, face_move)
    # At rest the torso sits as built (the identity).
    rest = synthetic.camera_poses(np.zeros((1, 2)), np.zeros((1, 3)))
    np.testing.assert_allclose(synthetic.torso_transforms(rest, np.zeros((1, 2)))[0], np.eye(4), atol=1e-12)


@pytest.mark.parametrize("yaw, pitch, openness", [(3.0, -2.0, 1.0), (-3.0, 2.0, 0.0)])
def test_render_matches_pytorch3d_mesh_renderer(yaw, pitch, openness):
    """One rasterization of the trimmed scene (faces no camera sees dropped, 4 faces per pixel)
    = PyTorch3D's MeshRenderer + HardFlatShader on the whole head + torso and on the torso alone."""
    from pytorch3d.renderer import (AmbientLights, BlendParams, HardFlatShader, MeshRasterizer, MeshRenderer,
                                    RasterizationSettings, TexturesVertex)
    from pytorch3d.structures import Meshes

    size = 64
    angles, shift = np.array([[yaw, pitch]]), np.array([[0.004, -0.006, 0.005]])
    poses = synthetic.camera_poses(angles, shift)
    to_head = synthetic.torso_transforms(poses, angles)[0]
    cam = radnerf_cameras(torch.from_numpy(poses), 70.4, 70.4, size / 2, size / 2, size, size)[0]
    frame = synthetic.render_frame(synthetic.Rasterizer(size), cam, openness, 0.6, to_head)

    renderer = MeshRenderer(MeshRasterizer(raster_settings=RasterizationSettings(image_size=size, bin_size=0)),
                            HardFlatShader(lights=AmbientLights(), blend_params=BlendParams(background_color=(0, 0, 0))))
    head, torso = build_head(openness, 0.6), build_torso()
    torso_verts = torso.verts @ to_head[:3, :3].T + to_head[:3, 3]

    def render(parts):
        verts = [torch.from_numpy(synthetic.tracker_to_ngp(v).astype(np.float32)) for v, _, _ in parts]
        faces, offset = [], 0
        for v, f, _ in parts:
            faces.append(torch.from_numpy(f) + offset)
            offset += len(v)
        mesh = Meshes([torch.cat(verts)], [torch.cat(faces)],
                      textures=TexturesVertex([torch.from_numpy(np.vstack([c for _, _, c in parts]))]))
        return renderer(mesh, cameras=cam)[0]

    both = render([(head.verts, head.faces, head.colors), (torso_verts, torso.faces, torso.colors)])
    alone = render([(torso_verts, torso.faces, torso.colors)])
    torch.testing.assert_close(frame.rgb, both[..., :3], atol=1e-5, rtol=0)
    assert torch.equal(frame.labels > 0, both[..., 3] > 0)
    torch.testing.assert_close(frame.torso_rgb, alone[..., :3], atol=1e-5, rtol=0)
    assert torch.equal(frame.torso_alpha, alone[..., 3] > 0)
    # Parsing classes from depth: head where the head covers and lies in front of the torso; neck
    # / torso by which of the (untrimmed) torso mesh's faces is nearest.
    raster = renderer.rasterizer
    head_frag = raster(Meshes([torch.from_numpy(synthetic.tracker_to_ngp(head.verts))], [torch.from_numpy(head.faces)]),
                       cameras=cam)
    torso_frag = raster(Meshes([torch.from_numpy(synthetic.tracker_to_ngp(torso_verts).astype(np.float32))],
                               [torch.from_numpy(torso.faces)]), cameras=cam)
    head_z, torso_z = head_frag.zbuf[0, ..., 0], torso_frag.zbuf[0, ..., 0]
    head_px = (head_z >= 0) & ((torso_z < 0) | (head_z < torso_z))
    torso_face = torso_frag.pix_to_face[0, ..., 0]
    want = torch.where(head_px, 1, torch.where(torso_face < 0, 0, torch.where(torso_face < torso.neck_faces, 2, 3)))
    assert torch.equal(frame.labels, want)
    assert set(want.unique().tolist()) == {0, 1, 2, 3}


def test_au_csv_and_eye_source(dataset_root):
    eyes = np.load(os.path.join(dataset_root, "eye_openness.npy"))
    assert eyes.min() == 0.0 and eyes.max() == 1.0  # a blink in the clip
    au = read_au45(os.path.join(dataset_root, "au.csv"), list(range(50)))
    torch.testing.assert_close(au, torch.from_numpy(1.0 - eyes).float())  # clip(2 (1 - eye), 0, 2) / 2
    with open(os.path.join(dataset_root, "au.csv")) as f:
        header = f.readline().rstrip("\n").split(",")
    assert header[:2] == ["frame", " face_id"] and " AU45_r" in header and " AU45_c" in header
    ds = TalkingHeadDataset(dataset_root, "val", eye_source="au")
    torch.testing.assert_close(ds.eye, au[44:])


def test_precomputed_deepspeech_aud_npy(dataset_root, tmp_path):
    """RAD-NeRF's DeepSpeech aud.npy (N, 16, 29) next to aud.wav is what the dataset loads."""
    root = str(tmp_path / "copy")
    shutil.copytree(dataset_root, root)
    feats = np.random.default_rng(0).standard_normal((50, 16, 29)).astype(np.float32)
    np.save(os.path.join(root, "aud.npy"), feats)
    ds = TalkingHeadDataset(root, "val")
    assert ds.audio_source.endswith("aud.npy")
    torch.testing.assert_close(ds.audio_window(0)[4], torch.from_numpy(feats[44]))


def test_head_fits_radnerf_box():
    head = build_head(openness=1.0, eye_open=1.0)
    pts = synthetic.tracker_to_ngp(head.verts)
    box = np.array([1.0, 0.5, 1.0])
    assert (np.abs(pts) <= box).all(), np.abs(pts).max(0)


def test_mouth_follows_the_audio(dataset_root):
    openness = np.load(os.path.join(dataset_root, "mouth_openness.npy"))
    samples, rate = read_audio(os.path.join(dataset_root, "aud.wav"))
    per_frame = rate // 25
    rms = np.sqrt((samples[: 50 * per_frame].reshape(50, per_frame) ** 2).mean(1))
    assert pearson(torch.tensor(rms), torch.tensor(openness)) > 0.8
    # Dark mouth-interior pixels inside the lips rectangle grow with the ground-truth openness.
    ds = TalkingHeadDataset(dataset_root, "train")
    dark = []
    for i in range(len(ds)):
        x0, x1, y0, y1 = ds.lips_rects[i]
        patch = ds.image(i)[y0:y1, x0:x1]
        dark.append(float((patch.mean(-1) < 0.25).sum()))
    assert pearson(torch.tensor(dark), torch.tensor(openness[: len(ds)])) > 0.8


def test_deterministic_and_cached(tmp_path, dataset_root):
    again = synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path), progress=False)
    assert again != dataset_root
    for name in LAYOUT[:-1] + tuple(p.format(7) for p in PER_FRAME):
        with open(os.path.join(again, name), "rb") as a, open(os.path.join(dataset_root, name), "rb") as b:
            assert a.read() == b.read(), name
    stamp = os.path.getmtime(os.path.join(again, "config.json"))
    assert synthetic.ensure_synthetic(CONFIG, cache_dir=str(tmp_path), progress=False) == again
    assert os.path.getmtime(os.path.join(again, "config.json")) == stamp


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.render_frame

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_frame", flaky)
    config = synthetic.SyntheticConfig(size=32, seconds=1.0, seed=1)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_synthetic(config, cache_dir=str(tmp_path), progress=False)
    assert os.listdir(os.path.join(tmp_path, "synthetic")) == [synthetic.LOCK_NAME]


def make_stale(folder):
    names = [TEMP_PREFIX + "dead", synthetic.LEGACY_TEMP_PREFIX + "old"]
    for name in names:
        os.makedirs(os.path.join(folder, name, "gt_imgs"))
        with open(os.path.join(folder, name, "gt_imgs", "0.jpg"), "wb") as f:
            f.write(b"x" * 1000)
    old = time.time() - synthetic.LEGACY_MIN_AGE_S - 60
    os.utime(os.path.join(folder, names[1]), (old, old))
    os.makedirs(os.path.join(folder, synthetic.LEGACY_TEMP_PREFIX + "recent"))  # maybe an old version's live one
    with open(os.path.join(folder, TEMP_PREFIX + "file.json"), "w") as f:
        f.write("{")
    return names + [TEMP_PREFIX + "file.json"]


def test_stale_temporaries_removed_on_next_start(dataset_root):
    folder = os.path.dirname(dataset_root)
    names = make_stale(folder)
    # While a generator holds the lock, nothing is removed (its temporary may be live).
    with open(os.path.join(folder, synthetic.LOCK_NAME), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        assert synthetic.remove_stale(folder) == 0
        assert synthetic.ensure_synthetic(CONFIG, cache_dir=os.path.dirname(folder), progress=False) == dataset_root
        assert set(names) <= set(os.listdir(folder))
    # The next start with no generator running removes them all and keeps the dataset.
    assert synthetic.ensure_synthetic(CONFIG, cache_dir=os.path.dirname(folder), progress=False) == dataset_root
    assert sorted(os.listdir(folder)) == sorted([synthetic.LOCK_NAME, os.path.basename(dataset_root),
                                                 synthetic.LEGACY_TEMP_PREFIX + "recent"])


GENERATOR = textwrap.dedent("""
    import sys, time
    from pt3d_radnerf.data import synthetic
    real = synthetic.render_frame
    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)
    synthetic.render_frame = slow
    synthetic.ensure_synthetic(synthetic.SyntheticConfig(size=32, seconds=1.0, seed=5), cache_dir=sys.argv[1],
                               progress=False)
""")


def test_kill_9_during_generation(tmp_path):
    folder = os.path.join(str(tmp_path), "synthetic")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", GENERATOR, str(tmp_path)], env=env)
    try:
        deadline = time.time() + 300
        temps = []
        while time.time() < deadline and proc.poll() is None:
            temps = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)] if os.path.isdir(folder) else []
            if temps and os.path.isfile(os.path.join(folder, temps[0], "gt_imgs", "1.jpg")):
                break
            time.sleep(0.1)
        assert proc.poll() is None and temps, "the generator did not start writing"
        assert synthetic.remove_stale(folder) == 0  # a live generator's temporary is kept
        assert os.path.isdir(os.path.join(folder, temps[0]))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert os.path.isdir(os.path.join(folder, temps[0]))  # what kill -9 leaves behind
    root = synthetic.ensure_synthetic(synthetic.SyntheticConfig(size=32, seconds=1.0, seed=5),
                                      cache_dir=str(tmp_path), progress=False)
    assert sorted(os.listdir(folder)) == sorted([synthetic.LOCK_NAME, os.path.basename(root)])
    assert len(TalkingHeadDataset(root, "train")) + len(TalkingHeadDataset(root, "val")) == 25
