"""One training step's batch and loss (RAD-NeRF's recipe on PyTorch3D's ImplicitRenderer).

1. draw ``cameras_per_step`` training frames and ``rays_per_camera`` pixels in each, with the
   lower face drawn ``face_ray_weight`` times more often (the mouth is where audio matters);
2. ``ImplicitRenderer(OccupancyGridRaysampler, OccupancyGridRaymarcher)`` renders them with each
   frame's audio window (8 x W x C), eye area and latent code;
3. loss = MSE(render over bc.jpg, ground truth) + ``entropy_weight`` x opacity entropy
   + ``ambient_weight`` x ramp x |ambient| on rays outside the lower-face rectangle.

The frames of step s are a function of (seed, s) (:func:`draw_frames`), so the trainer can ask
the dataset to decode the next step's images ahead; every other random draw goes through the
global torch RNG (checkpointed by the trainer).
"""

import math
from typing import Dict, Tuple

import torch
from pytorch3d.renderer import ImplicitRenderer

from ..audio import attention_windows
from ..data import TalkingHeadDataset
from ..renderer import ndc_grid_pixels
from .config import FitConfig
from .distributed import mean_over_ranks, share
from .losses import ambient_loss, opacity_entropy, ramp


def draw_frames(config: FitConfig, step: int, num_frames: int) -> torch.Tensor:
    """(cameras_per_step,) training frames of ``step``: drawn from a generator seeded with
    (``config.seed``, ``step``) only, so they are known before the step runs (prefetch) and a
    resumed run draws the same ones without any stored state."""
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    return torch.randint(0, num_frames, (config.cameras_per_step,), generator=gen)


def face_ray_weights(data: TalkingHeadDataset, indices: torch.Tensor, weight: float) -> torch.Tensor:
    """(B, H, W) pixel-sampling weights of items ``indices`` (B,): 1, and ``weight`` inside each
    item's lower-face rectangle (built per batch: no (N, H, W) map is kept)."""
    out = torch.ones(len(indices), data.height, data.width)
    for b, i in enumerate(indices.tolist()):
        x0, x1, y0, y1 = data.lower_face_rects[i]
        out[b, max(y0, 0) : y1, max(x0, 0) : x1] = weight
    return out


def per_ray_sum(values: torch.Tensor, packed_info: torch.Tensor) -> torch.Tensor:
    """(R,) sums of per-sample ``values`` (S,) over each ray's contiguous samples, rays in order
    (``packed_info`` (R, 2) of (start, count), starts ascending). A segment reduction: its
    forward and backward are deterministic on CPU and CUDA (``index_add_`` is not on CUDA)."""
    counts = packed_info[:, 1]
    if values.shape[0] != int(counts.sum()):
        raise ValueError(f"values have {values.shape[0]} samples, packed_info counts {int(counts.sum())}")
    if not torch.equal(packed_info[:, 0], counts.cumsum(0) - counts):
        raise ValueError("per_ray_sum needs each ray's samples right after the previous ray's")
    return torch.segment_reduce(values, "sum", lengths=counts, unsafe=True)


def batch_loss(field, renderer: ImplicitRenderer, data: TalkingHeadDataset, indices: torch.Tensor,
               step: int, config: FitConfig, device: torch.device) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Renders the rays of training items ``indices`` (B,) and returns (loss, stats).

    ``renderer`` is ``ImplicitRenderer(packed OccupancyGridRaysampler, OccupancyGridRaymarcher)``
    over the dataset's image grid; stats has ``loss``, ``psnr`` (of the batch MSE) and
    ``samples_per_ray``.
    """
    aux_out: Dict = {}
    cameras, mask, indices = _global_rays_local_items(data, indices, config, device)
    (images, aux), bundle = renderer(
        cameras=cameras, volumetric_function=field,
        audio=attention_windows(data.audio_features, data.aud_index[indices]).to(device),
        frame_index=indices.to(device), eye=data.eye[indices].to(device),
        mask=mask,
        n_rays_per_image=config.rays_per_camera, stratified_sampling=True, return_aux=True, aux_out=aux_out,
    )
    rows, cols = ndc_grid_pixels(bundle.xys[..., 0, :], data.width, data.height)  # (B, n) each
    target = torch.stack([data.image(int(i)) for i in indices]).to(device)  # (B, H, W, 3)
    cam = torch.arange(len(indices), device=device)[:, None]
    gt = target[cam, rows, cols]  # (B, n, 3), no grad
    opacity = images[..., 0, 3]  # (B, n)
    # The head is trained over what lies behind it: the ground-truth torso on bc.jpg when the
    # folder has torso_imgs/ (RAD-NeRF), else bc.jpg.
    background = torch.stack([data.head_background(int(i)) for i in indices]).to(device)  # (B, H, W, 3)
    pred = images[..., 0, :3] + (1.0 - opacity[..., None]) * background[cam, rows, cols]
    mse = torch.mean((pred - gt) ** 2)
    loss = mse + config.entropy_weight * opacity_entropy(opacity)

    # Ambient magnitude composited per ray with the (detached) weights, penalised outside the
    # lower face: audio may only move the mouth region.
    amb = torch.cat(aux_out["ambient"]).abs().sum(-1) * aux["weights"].detach()  # (S,) in sample order
    amb_ray = per_ray_sum(amb, bundle.packed_info)  # (B * n,)
    rects = torch.tensor([data.lower_face_rects[i] for i in indices.tolist()], device=device)  # (B, 4)
    inside = ((cols >= rects[:, 0:1]) & (cols < rects[:, 1:2]) & (rows >= rects[:, 2:3])
              & (rows < rects[:, 3:4]))
    loss = loss + config.ambient_weight * ramp(step, config.ambient_ramp_iters) * ambient_loss(
        amb_ray, inside.reshape(-1))
    return loss, _stats(loss, mse, bundle)


def _global_rays_local_items(data: TalkingHeadDataset, indices: torch.Tensor, config: FitConfig,
                             device: torch.device):
    """(cameras, ray-sampling weights) of ALL items ``indices`` (B,), for the raysampler (every
    process marches the whole batch, see :mod:`.distributed`), and this process's share of
    ``indices`` (all of them in a single process), for everything after the raysampler."""
    return (data.cameras(indices, device), face_ray_weights(data, indices, config.face_ray_weight).to(device),
            indices[share(len(indices))])


def _stats(loss: torch.Tensor, mse: torch.Tensor, bundle) -> Dict[str, float]:
    """The step's loss, PSNR of the batch MSE and samples per ray, over the global batch
    (averaged over processes: each holds an equal share of the rays)."""
    loss_v, mse_v, spr = mean_over_ranks(loss.detach(), mse.detach(), bundle.n_samples / max(bundle.n_rays, 1))
    return {"loss": loss_v, "psnr": -10.0 * math.log10(max(mse_v, 1e-10)), "samples_per_ray": spr}
