"""Random backgrounds (FitConfig.random_background, opaque heads): per-ray background and target
against an independent per-pixel computation from the files written, the training loss against
one computed from the captured render, and bit-exact resume with the random draws."""

import os

import numpy as np
import pytest
import torch
from pytorch3d.renderer import ImplicitRenderer

from pt3d_radnerf.data import TalkingHeadDataset, read_image
from pt3d_radnerf.renderer import ndc_grid_pixels
from pt3d_radnerf.training import FitConfig, HeadModel, ModelSpec, TalkingHeadTrainer
from pt3d_radnerf.training.config import config_changes
from pt3d_radnerf.training.losses import opacity_entropy
from pt3d_radnerf.training.step import batch_loss, ray_background_and_target
from tests.fit_helpers import differing, tiny_config, training_state
from tests.test_talking_head_data import H, W, make_folder
from tests.test_torso_data import write_parsing, write_torso_folder

B, N = 3, 300


def _folder(root, torso: bool, parsing: bool = True):
    """A 6-frame folder (random gt images; with torso: textured bc.jpg and RGBA torsos); returns
    the (6, H, W) class labels (1 = head) and (6, H, W, 4) uint8 torsos written (or None)."""
    torsos = None
    if torso:
        torsos = write_torso_folder(root)
    else:
        make_folder(root)
    return (write_parsing(root, block=4) if parsing else None), torsos  # blobs: interiors and bands


def _expected(root, indices, rows, cols, colour, labels, torsos):
    """Per ray, from the files: head pixel with an all-head 3x3 neighbourhood -> (colour, gt);
    no head pixel in the 3x3 neighbourhood and no torso alpha -> (colour, colour); else (torso,
    or the silhouette band) -> (torso over bc.jpg, gt)."""
    bc = read_image(os.path.join(root, "bc.jpg")).double().numpy()
    bg = np.zeros((B, N, 3))
    tgt = np.zeros((B, N, 3))
    for b, i in enumerate(indices.tolist()):
        gt = read_image(os.path.join(root, "gt_imgs", f"{i}.jpg")).double().numpy()
        for k in range(N):
            r, c = int(rows[b, k]), int(cols[b, k])
            alpha = 0.0 if torsos is None else torsos[i, r, c, 3] / 255.0
            around = labels[i, max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] == 1  # clipped at the border
            if around.all():
                bg[b, k], tgt[b, k] = colour[b, k], gt[r, c]
            elif alpha == 0.0 and not around.any():
                bg[b, k] = tgt[b, k] = colour[b, k]
            else:
                torso = 0.0 if torsos is None else torsos[i, r, c, :3] / 255.0
                bg[b, k], tgt[b, k] = torso * alpha + bc[r, c] * (1.0 - alpha), gt[r, c]
    return bg, tgt


def _pixels(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.tensor([4, 0, 4]), torch.randint(0, H, (B, N), generator=gen),
            torch.randint(0, W, (B, N), generator=gen))


@pytest.mark.parametrize("torso", [True, False])
def test_background_and_target_per_class(tmp_path, torso):
    root = str(tmp_path)
    labels, torsos = _folder(root, torso)
    data = TalkingHeadDataset(root)
    indices, rows, cols = _pixels()
    torch.manual_seed(3)
    bg, tgt = ray_background_and_target(data, indices, rows, cols, True)
    after = torch.get_rng_state()
    torch.manual_seed(3)
    colour = torch.rand(B, N, 3).double().numpy()  # the draws: B x n colours, global RNG, CPU
    assert torch.equal(after, torch.get_rng_state())
    want_bg, want_tgt = _expected(root, indices, rows, cols, colour, labels, torsos)
    assert bg.shape == tgt.shape == (B, N, 3) and bg.dtype == torch.float32
    np.testing.assert_allclose(bg.double().numpy(), want_bg, atol=1e-6, rtol=0)
    np.testing.assert_allclose(tgt.double().numpy(), want_tgt, atol=1e-6, rtol=0)
    head = labels[indices[:, None], rows, cols] == 1
    assert 0 < head.sum() < head.size  # both kinds of rays were drawn
    random_bg = np.abs(bg.double().numpy() - colour).max(-1) == 0
    assert (random_bg & head).any() and (random_bg & ~head).any()
    assert (~random_bg & head).any()  # head rays on the silhouette band keep the frame's background
    if torso:  # every class and alpha case is present
        alpha = torsos[indices[:, None], rows, cols, 3]
        assert ((~head) & (alpha == 0)).any() and ((~head) & (alpha > 0)).any()


@pytest.mark.parametrize("parsing,flag", [(False, True), (True, False)])
def test_default_backgrounds_without_parsing_or_flag(tmp_path, parsing, flag):
    root = str(tmp_path)
    _folder(root, torso=True, parsing=parsing)
    data = TalkingHeadDataset(root)
    indices, rows, cols = _pixels()
    state = torch.get_rng_state()
    bg, tgt = ray_background_and_target(data, indices, rows, cols, flag)
    assert torch.equal(state, torch.get_rng_state())  # no draws
    cam = torch.arange(B)[:, None]
    torch.testing.assert_close(bg, torch.stack([data.head_background(int(i)) for i in indices])[cam, rows, cols])
    torch.testing.assert_close(tgt, torch.stack([data.image(int(i)) for i in indices])[cam, rows, cols])


class Capture:
    """An ImplicitRenderer that records its output and the global RNG state after rendering."""

    def __init__(self, renderer):
        self.renderer, self.out, self.rng = renderer, None, None

    def __call__(self, **kwargs):
        self.out = self.renderer(**kwargs)
        self.rng = torch.get_rng_state()
        return self.out


def test_loss_is_the_mse_over_random_backgrounds(tmp_path):
    root = str(tmp_path)
    labels, torsos = _folder(root, torso=True)
    data = TalkingHeadDataset(root)
    config = FitConfig(grid_resolution=16, rays_per_camera=N, cameras_per_step=B, entropy_weight=0.01,
                       distortion_weight=0.0, random_background=True)  # the loss without the distortion term
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), config)
    head.grid.set_occupancy(torch.ones(1, 16**3, dtype=torch.bool))  # the random field shows
    renderer = Capture(ImplicitRenderer(head.raysampler(data.height, data.width), head.raymarcher))
    indices = torch.tensor([4, 0, 4])
    torch.manual_seed(11)
    loss, stats = batch_loss(head.field, renderer, data, indices, 0, config, torch.device("cpu"))
    (images, _), bundle = renderer.out
    rows, cols = ndc_grid_pixels(bundle.xys[..., 0, :], data.width, data.height)
    torch.set_rng_state(renderer.rng)
    colour = torch.rand(B, N, 3).double().numpy()
    bg, tgt = _expected(root, indices, rows, cols, colour, labels, torsos)
    rgb, opacity = images[..., 0, :3].detach().double(), images[..., 0, 3].detach().double()
    assert float(opacity.max()) > 0.1  # the field is not empty: the background is partly hidden
    pred = rgb.numpy() + (1.0 - opacity.numpy()[..., None]) * bg
    want = np.mean((pred - tgt) ** 2) + 0.01 * float(opacity_entropy(opacity))  # ambient: ramp 0 at step 0
    assert abs(float(loss.detach()) - want) < 1e-6 * max(want, 1.0)
    assert stats["loss"] == float(loss)


def test_resume_is_bit_exact_with_random_backgrounds(tmp_path, two_threads):
    root = str(tmp_path / "data")
    os.makedirs(root)
    _folder(root, torso=False)
    data = TalkingHeadDataset(root)
    config = tiny_config(iters=5, checkpoint_every=2, random_background=True)
    assert data.has_parsing
    whole = TalkingHeadTrainer(data, config, str(tmp_path / "whole"))
    whole.fit(progress=False)
    ws = str(tmp_path / "parts")
    TalkingHeadTrainer(data, config, ws).fit(progress=False, stop_at=3)  # checkpoint at 2, step 3 lost
    resumed = TalkingHeadTrainer(data, config, ws)
    resumed.fit(progress=False, resume=True)
    assert resumed.progress.step == 5
    assert not differing(training_state(whole), training_state(resumed))
    off = TalkingHeadTrainer(data, tiny_config(iters=5, checkpoint_every=2, random_background=False),
                             str(tmp_path / "off"))
    off.fit(progress=False)
    assert differing(training_state(whole), training_state(off))  # the flag changes training


def test_config_flag_and_legacy_checkpoints():
    assert FitConfig().random_background is False  # opt-in (README "Fitting: what makes fewer samples": about -1 dB)
    with pytest.raises(TypeError, match="random_background must be a bool"):
        FitConfig(random_background=1)
    stored = FitConfig(random_background=False).to_dict()
    del stored["random_background"]  # a checkpoint written before the flag existed
    assert FitConfig.from_dict(stored).random_background is False
    assert config_changes(stored, FitConfig(random_background=True)) == {"random_background": (False, True)}
    assert config_changes(stored, FitConfig()) == {}
