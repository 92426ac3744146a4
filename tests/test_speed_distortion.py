"""mip-NeRF 360's distortion loss on packed samples against the direct pair sum, value and gradient."""

import torch

from pt3d_radnerf.training.losses import distortion_loss


def _naive(w, t0, t1, counts):
    out, start = [], 0
    for c in counts.tolist():
        wi, m = w[start:start + c], 0.5 * (t0 + t1)[start:start + c]
        pairs = (wi[:, None] * wi[None, :] * (m[:, None] - m[None, :]).abs()).sum()
        out.append(pairs + (wi**2 * (t1 - t0)[start:start + c]).sum() / 3.0)
        start += c
    return torch.stack(out)


def test_distortion_equals_the_pair_sum(two_threads):
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([5, 0, 1, 16, 3, 0, 9])
    starts = counts.cumsum(0) - counts
    s = int(counts.sum())
    deltas = torch.rand(s, generator=g, dtype=torch.float64) * 0.05 + 0.01
    t0 = torch.cat([2.0 + torch.cumsum(d, 0) - d for d in deltas.split(counts.tolist())])
    t1 = t0 + deltas
    w = (torch.rand(s, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    info = torch.stack([starts, counts], -1)
    got = distortion_loss(w, t0, t1, info)
    want = _naive(w, t0, t1, counts)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert got.dtype == torch.float64 and got[1] == 0 and got[5] == 0
    cot = torch.rand(len(counts), generator=g, dtype=torch.float64)
    (gw,) = torch.autograd.grad(got, w, cot)
    (gw_want,) = torch.autograd.grad(want, w, cot)
    torch.testing.assert_close(gw, gw_want, atol=1e-12, rtol=1e-12)
    # Concentrated weight (one sample) scores lower than the same total spread along the ray.
    one = distortion_loss(torch.tensor([0.0, 0.0, 1.0, 0.0]), t0[:4], t1[:4], torch.tensor([[0, 4]]))
    spread = distortion_loss(torch.full((4,), 0.25), t0[:4], t1[:4], torch.tensor([[0, 4]]))
    assert float(one) < float(spread)


def test_weights_from_sigma_composite_and_reach_the_field(tmp_path):
    from pytorch3d.renderer import ImplicitRenderer

    from pt3d_radnerf.data import TalkingHeadDataset
    from pt3d_radnerf.training import FitConfig, HeadModel, ModelSpec
    from pt3d_radnerf.training.losses import weights_from_sigma
    from pt3d_radnerf.training.step import batch_loss
    from tests.test_talking_head_data import make_folder

    make_folder(str(tmp_path))
    data = TalkingHeadDataset(str(tmp_path))
    grads = []
    for weight in (0.0, 0.5):
        config = FitConfig(grid_resolution=16, rays_per_camera=64, cameras_per_step=2, distortion_weight=weight)
        head = HeadModel(ModelSpec.for_dataset(data.audio_features, len(data)), config)
        head.grid.set_occupancy(torch.ones(1, 16**3, dtype=torch.bool))
        with torch.no_grad():
            head.field.encoder.embeddings.uniform_(-1, 1)
        captured = {}
        implicit = ImplicitRenderer(head.raysampler(data.height, data.width), head.raymarcher)

        def renderer(implicit=implicit, **kwargs):
            captured["out"] = implicit(**kwargs)
            captured["aux_out"] = kwargs["aux_out"]
            return captured["out"]

        torch.manual_seed(0)
        loss, _ = batch_loss(head.field, renderer, data, torch.tensor([1, 3]), 0, config, torch.device("cpu"))
        loss.backward()
        grads.append(head.field.sigma_net[0].weight.grad.clone())
        (_, aux), bundle = captured["out"]
        w = weights_from_sigma(torch.cat(captured["aux_out"]["sigma"]).detach(), bundle.deltas(), bundle.packed_info)
        torch.testing.assert_close(w, aux["weights"], atol=1e-5, rtol=1e-4)  # the raymarcher's weights
    assert not torch.equal(grads[0], grads[1])  # the distortion term reaches the field
