"""benchmarks/bench_field.py runs at a tiny size: positive rates, a faithful twin, MLP MAC count."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import bench_field  # noqa: E402

from pt3d_radnerf.models import AudioRadianceField  # noqa: E402


@pytest.fixture(scope="module")
def field():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine stalls multi-threaded regions for ~0.1 s each
    yield AudioRadianceField("deepspeech", num_frames=20)
    torch.set_num_threads(threads)


def test_measure_returns_positive_rates(field):
    rates = bench_field.measure(field, 256, repeats=1, min_time=0.0)
    assert set(rates) == {"fwd", "fwd+bwd"}
    assert all(r > 0 and r != float("inf") for r in rates.values())


def test_twin_grids_give_the_same_field(field):
    inp = bench_field.make_inputs(field, 512)
    twin = bench_field.with_twin_grids(field)
    with torch.no_grad():
        for ours, stock in zip(bench_field.field_call(field, inp), bench_field.field_call(twin, inp)):
            torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)
    assert twin.encoder.embeddings is not field.encoder.embeddings  # a copy: timing one leaves the other


def test_mac_count(field):
    m = bench_field.macs(field)
    ambient = (32 + 64) * 64 + 64 * 64 + 64 * 2
    sigma = (32 + 32 + 1) * 64 + 64 * 64 + 64 * 65
    colour = (16 + 64 + 4) * 64 + 64 * 3
    assert m["mlp_per_sample"] == ambient + sigma + colour
    assert m["grid_per_sample"] == 16 * 8 * 2 + 16 * 4 * 2
    assert m["audio_per_camera"] > 8 * 29 * 32 * 3 * 8  # at least the first conv of 8 windows
