"""The field's backward is bitwise reproducible at 2 threads (issue 12.7).

Advanced indexing (``codes[frame][cam]``, ``a[cam]``) adds its backward atomically on CPU with
more than one thread, so two identical passes differed in the latent codes, the ambient net and
the audio nets (checked against the previous field: every run differed within 4 passes). The
field now gathers with ``F.embedding``, whose backward sums each row in a fixed order. The
cameras of the rays are interleaved so that both threads add into the same rows.
"""

import torch

from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.renderer.ray_bundle import PackedRayBundle, pack_info


def packed_bundle(cameras=2, rays=1024, samples=24):
    """Rays from (0, 0, 3) towards the head box, each ray's camera drawn at random."""
    origins = torch.tensor([0.0, 0.0, 3.0]).expand(cameras, rays, 3).clone()
    dirs = torch.nn.functional.normalize(torch.randn(cameras, rays, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    ray_indices = torch.arange(cameras * rays).repeat_interleave(samples)
    t = torch.linspace(2.0, 4.0, samples + 1)
    return PackedRayBundle(origins, dirs, torch.zeros(cameras, rays, 2), ray_indices, t[:-1].repeat(cameras * rays),
                           t[1:].repeat(cameras * rays), pack_info(ray_indices, cameras * rays),
                           camera_ids=torch.randint(0, cameras, (cameras, rays)))


def test_field_gradients_are_bitwise_equal_at_two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        field = AudioRadianceField("deepspeech", num_frames=4, log2_hashmap_size=12)
        bundle = packed_bundle()
        kwargs = dict(audio=torch.randn(2, 8, 16, 29), frame_index=torch.tensor([1, 1]), eye=torch.tensor([0.2, 0.3]))

        def gradients():
            field.zero_grad()
            aux = {}
            alpha, rgb = field(bundle, aux_out=aux, **kwargs)
            (alpha.sum() + rgb.square().sum() + aux["ambient"][0].abs().sum()).backward()
            return {name: p.grad.clone() for name, p in field.named_parameters()}

        first = gradients()
        assert first["individual_codes"][1].abs().sum() > 0 and first["ambient_net.0.weight"].abs().sum() > 0
        for _ in range(3):
            again = gradients()
            differ = [name for name in first if not torch.equal(first[name], again[name])]
            assert not differ, differ
    finally:
        torch.set_num_threads(threads)
