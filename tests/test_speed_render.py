"""Inference speed pieces: the field's bfloat16 MLP option (mlp_autocast) and bench_render's
instrumented render (it must render what inference renders and count what it evaluates)."""

import os
import sys

import pytest
import torch

from pt3d_radnerf import ops
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.training import FitConfig, HeadModel, ModelSpec
from pt3d_radnerf.training.inference import render_layers
from tests.test_talking_head_data import make_folder

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import bench_render  # noqa: E402


def _query_inputs(field, n=2000):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, 3, generator=g) * 1.6 - 0.8, torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1),
            torch.randn(2, field.dim_aud, generator=g), field.individual_codes[[0, 1]][torch.arange(n) % 2],
            torch.full((n, 1), 0.3), torch.arange(n) % 2)


def test_mlp_autocast_bf16_is_close_to_float32_and_inference_only():
    torch.manual_seed(0)
    field = AudioRadianceField((16, 8), num_frames=2)
    with torch.no_grad():
        for enc in (field.encoder, field.encoder_ambient):
            enc.embeddings.uniform_(-0.5, 0.5)  # features of the size a trained field has
        args = _query_inputs(field)
        ref = field.query(*args)
        field.mlp_autocast = torch.bfloat16
        got = field.query(*args)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert not torch.equal(a, b)  # the MLPs did run in bfloat16
    sigma, rgb, ambient = got
    torch.testing.assert_close(rgb, ref[1], atol=0.02, rtol=0)  # bf16: 8 significant bits
    torch.testing.assert_close(ambient, ref[2], atol=0.02, rtol=0)
    torch.testing.assert_close(sigma, ref[0], atol=1e-3, rtol=0.05)
    with pytest.raises(RuntimeError, match="mlp_autocast.*inference option.*no_grad"):
        field.query(*args)  # grad enabled: training in bf16 is refused
    field.mlp_autocast = None
    field.query(*args)


def test_mlp_layers_are_the_per_sample_linear_shapes():
    field = AudioRadianceField("deepspeech", num_frames=2)
    shapes = bench_render.mlp_layers(field)
    # ambient (spatial columns only: the audio half runs per camera), sigma, colour
    assert shapes == [(32, 64), (64, 64), (64, 2), (65, 64), (64, 64), (64, 65), (84, 64), (64, 3)]


@pytest.fixture(scope="module")
def head_and_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("folder"))
    make_folder(root)
    data = TalkingHeadDataset(root, "val")
    torch.manual_seed(0)
    head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), FitConfig(grid_resolution=16))
    with torch.no_grad():
        head.field.encoder.embeddings.uniform_(-2, 2)
        last = head.field.sigma_net[-1].weight
        last[0] = last[0].abs() * 40  # sigma = exp(h0) with h0 >= 0 and large: opaque where occupied
    head.grid.update(lambda x: head.field.density(x), step=0)
    return head, data


@pytest.mark.parametrize("bf16", [False, True])
def test_probed_render_is_the_inference_render(head_and_data, bf16):
    head, data = head_and_data
    layers, stats = bench_render.render_frame_probed(head, data, 2, 32, bf16)
    head.field.mlp_autocast = torch.bfloat16 if bf16 else None
    audio_code = head.field.encode_audio(head.audio_windows(data.audio_features, data.aud_index[2:3]))
    want = render_layers(head.field, head.raysampler(32, 32), data.cameras([2]), audio_code, data.eye[2:3],
                         head.raymarcher)  # what HeadModel.layers renders, at 32 x 32
    for a, b in zip(layers, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Counts: what render_compacted reports, rays hit <= pixels, stopped <= hit.
    _, aux = bench_render.render_compacted(
        data.cameras([2]), head.field, head.raysampler(32, 32), head.raymarcher,
        audio_code=audio_code, frame_index=torch.zeros(1, dtype=torch.long), eye=data.eye[2:3], background=None, return_aux=True)
    head.field.mlp_autocast = None
    assert stats["samples"] == aux["samples"] > 0 and stats["calls"] == aux["iterations"]
    assert 0 < stats["stopped"] <= stats["hit"] <= 32 * 32
    rays, grid, march = head.raysampler(32, 32).rays(data.cameras([2]))
    info = ops.occupancy_march(rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3), grid.box,
                               grid.bitfield, **march)[3]
    assert stats["hit"] == int((info[:, 1] > 0).sum())  # every ray with a sample in the full march
    assert stats["total"] >= stats["march"] + stats["field"] + stats["composite"] > 0
