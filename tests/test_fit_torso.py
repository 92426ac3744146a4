"""The head is trained and evaluated over what lies behind it: the ground-truth torso composited
on bc.jpg when the folder has RAD-NeRF's torso_imgs/ (its head-only protocol), else bc.jpg."""

import torch
from pytorch3d.renderer import ImplicitRenderer

from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.training import FitConfig
from pt3d_radnerf.training.config import ModelSpec
from pt3d_radnerf.training.inference import HeadModel
from pt3d_radnerf.training.step import batch_loss
from tests.test_torso_data import write_torso_folder


def empty_head(data: TalkingHeadDataset) -> HeadModel:
    """A head whose occupancy grid is empty: every ray shows the background unchanged."""
    config = FitConfig(grid_resolution=16, rays_per_camera=32, cameras_per_step=2)
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), config)
    head.grid.set_occupancy(torch.zeros(1, 16**3, dtype=torch.bool))
    return head, config


def test_render_and_training_loss_use_the_torso_background(tmp_path):
    write_torso_folder(str(tmp_path))
    data = TalkingHeadDataset(str(tmp_path))
    assert data.has_torso and not torch.equal(data.head_background(2), data.background)
    head, config = empty_head(data)
    torch.testing.assert_close(head.render(data, 2), data.head_background(2))
    # New-audio renders replay another frame's pose: its torso, not the audio frame's.
    torch.testing.assert_close(head.render(data, 1, pose_index=3), data.head_background(3))

    # With the targets replaced by the torso backgrounds, an empty head is a perfect fit only if
    # the loss composites over the same backgrounds (bc.jpg alone would leave an error).
    data.image = data.head_background
    renderer = ImplicitRenderer(head.raysampler(data.height, data.width), head.raymarcher)
    _, stats = batch_loss(head.field, renderer, data, torch.tensor([1, 4]), 0, config, torch.device("cpu"))
    assert stats["psnr"] >= 99.0  # batch MSE <= 1e-10 (the loss adds the opacity entropy)
