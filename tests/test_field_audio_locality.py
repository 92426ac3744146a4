"""Audio locality of a fitted AudioRadianceField (issue #6).

A toy head in RAD-NeRF's box, in pure PyTorch: a static ellipsoid (density 3) plus a "mouth" blob at
the front whose density grows with the loudness s in [0, 1] of the audio window (s times a fixed
random (16, 8) feature pattern). A field with RAD-NeRF's sizes (single-window audio, no attention)
is fitted in a few seconds directly on point densities (``query()`` sigma vs the toy's sigma at
random points, a random loudness per clip), with RAD-NeRF's ambient loss: mean |ambient| of the
points outside a box around the mouth (the 3-D stand-in for the lower-face rectangle), warmed up
with ``ramp``. Its weight, 10, is 100x RAD-NeRF's 0.1, as the toy's densities (0 to 8) make its MSE
much larger than an RGB MSE.

Measured after the fit, between a quiet (s = 0.1) and a loud (s = 0.9) window:
  * mouth: mean |change of sigma| over a small cloud at the mouth;
  * far:   the largest such mean over clouds at landmarks >= 0.5 from the mouth (brow, forehead,
           back, sides, chin, centre), and the mean over uniform points of the box that far away.

Controls that can fail: the field must really have learned the mouth's audio dependence (its
change is at least half the toy's and follows the loudness, correlation > 0.9); the far measure
must light up when the data itself moves a far feature (a brow that rises with loudness); and the
ambient loss must shrink |ambient| outside the mouth against the same fit without it.

Measured while writing this test (seeds 0-4): far / mouth was 0.05-0.07 with the ambient loss and
0.05-0.13 without it, the brow control 0.63-0.69, and |ambient| outside the mouth 10-17x smaller
with the loss. With point supervision the far region is pinned at every loudness, so locality here
comes mostly from the data: the 2-D ambient grid is fine enough (2048 cells a side) to turn the small
remaining ambient differences into density differences, and the loss does not stop a far feature
that the data ties to the audio (the brow control moves with the loss on).
"""

import pytest
import torch

from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.training.losses import ambient_loss, ramp

BOX_MIN, BOX_MAX = torch.tensor([-1.0, -0.5, -1.0]), torch.tensor([1.0, 0.5, 1.0])
HEAD_RADII = torch.tensor([0.6, 0.4, 0.6])
MOUTH = torch.tensor([0.0, -0.2, 0.5])
BROW = torch.tensor([0.0, 0.35, 0.35])
FAR_LANDMARKS = {  # all >= 0.5 from the mouth
    "brow": BROW, "forehead": torch.tensor([0.0, 0.4, 0.0]), "back": torch.tensor([0.0, 0.0, -0.6]),
    "left": torch.tensor([-0.6, 0.0, 0.0]), "right": torch.tensor([0.6, 0.0, 0.0]),
    "chin": torch.tensor([0.0, -0.4, 0.0]), "centre": torch.tensor([0.0, 0.0, 0.0]),
}
WINDOW, WIDTH = 16, 8
QUIET, LOUD = 0.1, 0.9


def blob(x: torch.Tensor, centre: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian bump (...,) at points x (..., 3)."""
    return torch.exp(-(x - centre).square().sum(-1) / (2 * width**2))


def toy_sigma(x: torch.Tensor, s: torch.Tensor, brow_follows_audio: bool = False) -> torch.Tensor:
    """Toy density (...,) at points x (..., 3) for loudness s (broadcast against x's batch dims)."""
    r = (x / HEAD_RADII).square().sum(-1).sqrt()
    sigma = 3 * torch.sigmoid((1 - r) / 0.05) + 5 * s * blob(x, MOUTH, 0.08)
    if brow_follows_audio:
        sigma = sigma + 3 * s * blob(x, BROW, 0.1)
    return sigma


def in_mouth_box(x: torch.Tensor) -> torch.Tensor:
    """(N,) bool: points (N, 3) where audio may act (the ambient loss spares them)."""
    return ((x - MOUTH).abs() < 0.25).all(-1)


def query(field: AudioRadianceField, points: torch.Tensor, audio_code: torch.Tensor):
    """sigma (N,) and ambient (N, 2) at points (N, 3) for audio codes audio_code (N, dim_aud)."""
    n = points.shape[0]
    sigma, _, ambient = field.query(points, torch.tensor([0.0, 0.0, 1.0]).expand(n, 3), audio_code,
                                    field.individual_codes[:1].expand(n, -1), torch.full((n, 1), field.default_eye))
    return sigma, ambient


def fit_toy(ambient_weight: float, brow_follows_audio: bool = False, seed: int = 0, steps: int = 150,
            clips: int = 4, points: int = 384) -> dict:
    """Fits a field to the toy (``clips`` loudnesses x ``points`` points per step, half uniform in
    the box, half near the mouth and brow) and returns the measures of the module docstring."""
    torch.manual_seed(seed)
    pattern = torch.randn(WINDOW, WIDTH)
    field = AudioRadianceField((WINDOW, WIDTH), num_frames=1, use_attention=False)
    opt = torch.optim.Adam(field.param_groups(lr=1e-2, lr_net=1e-3), betas=(0.9, 0.99), eps=1e-15, fused=True)
    for step in range(steps):
        s = torch.rand(clips)
        audio_code = field.encode_audio(s[:, None, None] * pattern + 0.05 * torch.randn(clips, WINDOW, WIDTH))
        uniform = BOX_MIN + (BOX_MAX - BOX_MIN) * torch.rand(clips, points // 2, 3)
        centres = torch.where(torch.rand(clips, points // 2, 1) < 0.5, MOUTH, BROW)
        features = (centres + 0.12 * torch.randn(clips, points // 2, 3)).clamp(BOX_MIN, BOX_MAX)
        x = torch.cat([uniform, features], 1)  # (clips, points, 3)
        target = toy_sigma(x, s[:, None], brow_follows_audio).reshape(-1)
        x = x.reshape(-1, 3)
        sigma, ambient = query(field, x, audio_code.repeat_interleave(points, 0))
        loss = (sigma - target).square().mean()
        if ambient_weight:
            amb = ambient_loss(ambient.abs().sum(-1), in_mouth_box(x))
            loss = loss + ambient_weight * ramp(step, steps // 2) * amb
        opt.zero_grad()
        loss.backward()
        opt.step()

    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        def sigma_at(p, loudness):
            return field.density(p, audio=loudness * pattern)

        def change(p):
            return (sigma_at(p, LOUD) - sigma_at(p, QUIET)).abs().mean().item()

        def cloud(centre):
            return centre + 0.04 * torch.randn(500, 3, generator=gen)

        mouth = cloud(MOUTH)
        box = BOX_MIN + (BOX_MAX - BOX_MIN) * torch.rand(20000, 3, generator=gen)
        far_box = box[(box - MOUTH).norm(dim=-1) > 0.5]
        loudness = torch.linspace(0, 1, 11)
        at_mouth = torch.stack([sigma_at(MOUTH[None], v)[0] for v in loudness])
        _, ambient = query(field, box, field.encode_audio(0.5 * pattern).expand(len(box), -1))
        by_landmark = {name: change(cloud(c)) for name, c in FAR_LANDMARKS.items()}
        return {
            "mouth": change(mouth),
            "toy_mouth": (toy_sigma(mouth, LOUD) - toy_sigma(mouth, QUIET)).abs().mean().item(),
            "far": max(by_landmark.values()), "by_landmark": by_landmark, "far_box": change(far_box),
            "loudness_corr": torch.corrcoef(torch.stack([loudness, at_mouth]))[0, 1].item(),
            "ambient_outside": ambient.abs().sum(-1)[~in_mouth_box(box)].mean().item(),
            "ambient_inside": ambient.abs().sum(-1)[in_mouth_box(box)].mean().item(),
        }


@pytest.fixture(scope="module")
def fits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same sums on every machine, and no oversubscription on a busy one
    try:
        runs = {"ambient": fit_toy(10.0), "no_ambient": fit_toy(0.0),
                "brow_control": fit_toy(10.0, brow_follows_audio=True)}
    finally:
        torch.set_num_threads(threads)
    for name, m in runs.items():
        print(f"\n{name}: mouth {m['mouth']:.3f} (toy {m['toy_mouth']:.3f}), far {m['far']:.4f} "
              f"({m['far'] / m['mouth']:.4f} of mouth), far box {m['far_box']:.4f}, corr "
              f"{m['loudness_corr']:.3f}, |ambient| outside / inside {m['ambient_outside']:.4f} / "
              f"{m['ambient_inside']:.4f}")
    return runs


def test_fitted_field_learned_the_mouth(fits):
    m = fits["ambient"]
    assert m["mouth"] > 0.5 * m["toy_mouth"]
    assert m["loudness_corr"] > 0.9


def test_audio_changes_density_near_the_mouth_only(fits):
    m = fits["ambient"]
    assert m["far"] < 0.15 * m["mouth"], m["by_landmark"]
    assert m["far_box"] < 0.04 * m["mouth"]


def test_far_measure_sees_a_far_feature_that_follows_the_audio(fits):
    m = fits["brow_control"]
    assert m["mouth"] > 0.5 * m["toy_mouth"]
    assert m["by_landmark"]["brow"] > 0.3 * m["mouth"]
    assert m["far"] == m["by_landmark"]["brow"]


def test_ambient_loss_shrinks_ambient_outside_the_mouth(fits):
    assert fits["ambient"]["ambient_outside"] < 0.3 * fits["no_ambient"]["ambient_outside"]
