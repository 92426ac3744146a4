"""One torch.compile'd training step (field + raymarcher, forward and backward) equals eager.

The custom ops' fake kernels let Dynamo/AOTAutograd trace through compositing, grid and SH
encodings; the samples come from a fixed PackedRayBundle built outside the compiled region.
"""

import copy

import torch
from torch._dynamo.backends.debugging import aot_eager

from pt3d_radnerf import ops
from pt3d_radnerf.models import AudioRadianceField
from pt3d_radnerf.renderer import OccupancyGridRaymarcher
from pt3d_radnerf.renderer.ray_bundle import PackedRayBundle


def fixed_bundle(n_rays=24):
    """Rays through the field's head box, marched through a fully occupied one-cascade grid."""
    gen = torch.Generator().manual_seed(7)
    target = (torch.rand(n_rays, 3, generator=gen) - 0.5) * torch.tensor([1.6, 0.8, 1.6])
    origins = torch.tensor([0.0, 0.0, 3.0]) + torch.randn(n_rays, 3, generator=gen) * 0.1
    directions = torch.nn.functional.normalize(target - origins, dim=-1)
    aabb = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
    bits = torch.full((16**3 // 8,), 255, dtype=torch.uint8)
    ray_idx, t0, t1, info = ops.occupancy_march(origins, directions, aabb, bits, cascades=1, resolution=16,
                                                dt_min=0.25, max_samples=12)
    assert ray_idx.numel() > n_rays  # several samples per ray
    return PackedRayBundle(origins=origins.view(2, -1, 3), directions=directions.view(2, -1, 3),
                           xys=torch.zeros(2, n_rays // 2, 2), ray_indices=ray_idx, t_starts=t0, t_ends=t1,
                           packed_info=info)


def test_compiled_training_step_matches_eager():
    torch.manual_seed(0)
    field = AudioRadianceField("deepspeech", num_frames=4, log2_hashmap_size=10, hidden=16, dim_aud=8)
    compiled_field = copy.deepcopy(field)
    raymarcher = OccupancyGridRaymarcher(background=1.0)
    bundle = fixed_bundle()
    audio = torch.randn(2, 8, 16, 29)
    target = torch.rand(2, 12, 3)

    def step(model, bundle, audio):
        densities, colors = model(ray_bundle=bundle, audio=audio, frame_index=torch.tensor([1, 2]))
        images = raymarcher(densities, colors, ray_bundle=bundle)
        return (images[..., :3] - target).square().mean() + 0.1 * images[..., 3].mean()

    loss = step(field, bundle, audio)
    loss.backward()
    traced = set()

    def backend(gm, example_inputs):
        # aot_eager: Dynamo + AOTAutograd trace the ops through their fake kernels and registered
        # backward (what the registrations decide); Inductor codegen would only add minutes of C++.
        traced.update(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return aot_eager(gm, example_inputs)

    compiled = torch.compile(step, backend=backend)
    loss_c = compiled(compiled_field, bundle, audio)
    loss_c.backward()
    # Our ops were traced into graphs (not run eagerly between graph breaks).
    assert {f"pt3d_radnerf.{op}" for op in ("composite", "grid_encode", "sh_encode")} <= traced, traced
    torch.testing.assert_close(loss_c, loss, atol=1e-5, rtol=1e-5)
    grads = dict(field.named_parameters())
    checked = 0
    for name, p in compiled_field.named_parameters():
        want = grads[name].grad
        assert (p.grad is None) == (want is None), name
        if want is not None:
            torch.testing.assert_close(p.grad, want, atol=1e-5, rtol=1e-4, msg=name)
            checked += int(want.abs().sum() > 0)
    assert checked >= 10  # grids, audio nets and MLPs all received gradients
