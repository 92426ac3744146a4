"""One training step's batch and loss (RAD-NeRF's recipe on PyTorch3D's ImplicitRenderer).

1. draw ``cameras_per_step`` training frames and ``rays_per_camera`` pixels in each, with the
   lower face drawn ``face_ray_weight`` times more often (the mouth is where audio matters);
2. ``ImplicitRenderer(OccupancyGridRaysampler, OccupancyGridRaymarcher)`` renders them with each
   frame's audio window (8 x W x C), eye area and latent code;
3. loss = MSE(render over its background, target) + ``entropy_weight`` x opacity entropy
   + ``distortion_weight`` x mean per-ray distortion (mip-NeRF 360; fewer samples per frame)
   + ``ambient_weight`` x ramp x |ambient| on rays outside the lower-face rectangle; background
   and target per ray from :func:`ray_background_and_target` (random backgrounds: opaque heads).

The frames of step s are a function of (seed, s) (:func:`draw_frames`), so the trainer can ask
the dataset to decode the next step's images ahead; every other random draw goes through the
global torch RNG (checkpointed by the trainer).
"""

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from pytorch3d.renderer import ImplicitRenderer

from ..audio import attention_windows
from ..data import TalkingHeadDataset
from ..renderer import ndc_grid_pixels
from .config import FitConfig
from .distributed import mean_over_ranks, share, world_size
from .losses import ambient_loss, distortion_loss, opacity_entropy, ramp, weights_from_sigma


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


def _pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(B, n, ...) pixels (rows, cols) (B, n) of per-item ``images`` (B, H, W, ...)."""
    cam = torch.arange(images.shape[0], device=rows.device)[:, None]
    return images.to(rows.device)[cam, rows, cols]


def ray_background_and_target(data: TalkingHeadDataset, indices: torch.Tensor, rows: torch.Tensor,
                              cols: torch.Tensor, random_background: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """What lies behind each training ray and the colour it must reproduce: (background, target),
    (B, n, 3) each, for pixels (rows, cols) (B, n) of items ``indices`` (B,), on rows' device.

    By default the head is trained over what lies behind it in the frame (the ground-truth torso
    on bc.jpg when the folder has torso_imgs/, RAD-NeRF's; else bc.jpg) against the frame.
    Over a known background a translucent head with colours pushed away from it reproduces the
    frame as well as an opaque one, and its rays never stop early. With ``random_background``
    and the folder's parsing/ maps (``data.has_parsing``) the background is a random colour per
    ray (uniform in [0, 1]^3, drawn from the global torch RNG on the CPU: checkpointed, so
    resumed runs draw the same) wherever nothing of the frame lies behind the head:

    * head pixels (``data.head_mask``) whose 3x3 neighbourhood is all head: background random,
      target the frame. Only an opaque head (transmittance 0) hides a colour it cannot predict;
    * pure-background pixels (no torso alpha; every pixel without torso images) with no head
      pixel in their 3x3 neighbourhood: background and target the same random colour: the field
      must be empty there;
    * the rest: unchanged. Torso pixels (torso alpha > 0): the ground-truth torso is what lies
      behind. The silhouette band (pixels within one pixel of the head mask's edge): a parsing
      edge is uncertain by a pixel and an edge pixel mixes head and what lies behind, so there
      the head may stay partly transparent over the known background (with random colours on
      the band its squared error rose by a third on make run's head; README "Fitting: what makes
      fewer samples").

    Without parsing/ (or ``random_background=False``) the default; no random numbers are drawn.
    """
    target = _pixels(torch.stack([data.image(int(i)) for i in indices]), rows, cols)  # (B, n, 3), no grad
    background = _pixels(torch.stack([data.head_background(int(i)) for i in indices]), rows, cols)
    if not (random_background and data.has_parsing):
        return background, target
    head = torch.stack([data.head_mask(int(i)) for i in indices]).float()[:, None]  # (B, 1, H, W)
    near_head = _pixels(F.max_pool2d(head, 3, 1, 1)[:, 0] > 0, rows, cols)  # (B, n) bool
    head = _pixels(-F.max_pool2d(-head, 3, 1, 1)[:, 0] > 0, rows, cols)  # eroded: the band excluded
    empty = ~near_head
    if data.has_torso:
        empty &= _pixels(torch.stack([data.torso_rgba(int(i))[..., 3] for i in indices]), rows, cols) == 0
    # Drawn for the whole step's batch and cut to this process's cameras (see .distributed): every
    # process consumes the same random numbers and a ray's colour does not depend on the split.
    batch = rows.shape[0] * world_size()
    colour = torch.rand(batch, rows.shape[1], 3)[share(batch)].to(rows.device)
    background = torch.where((head | empty)[..., None], colour, background)
    target = torch.where(empty[..., None], colour, target)
    return background, target


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
    background, gt = ray_background_and_target(data, indices, rows, cols, config.random_background)
    opacity = images[..., 0, 3]  # (B, n)
    pred = images[..., 0, :3] + (1.0 - opacity[..., None]) * background
    mse = torch.mean((pred - gt) ** 2)
    loss = mse + config.entropy_weight * opacity_entropy(opacity)
    if config.distortion_weight > 0:
        # On weights recomputed from the field's sigmas: the raymarcher's are detached.
        metric = bundle.directions.reshape(-1, 3).norm(dim=-1)[bundle.ray_indices].detach()  # t -> metric
        weights = weights_from_sigma(torch.cat(aux_out["sigma"]), bundle.deltas().detach(), bundle.packed_info)
        loss = loss + config.distortion_weight * distortion_loss(
            weights, bundle.t_starts * metric, bundle.t_ends * metric, bundle.packed_info).mean()

    # Ambient magnitude composited per ray with the (detached) weights, penalised outside the
    # lower face: audio may only move the mouth region.
    amb = torch.cat(aux_out["ambient"]).abs().sum(-1) * aux["weights"].detach()  # (S,) in sample order
    amb_ray = per_ray_sum(amb, bundle.packed_info)  # (B * n,)
    rects = torch.tensor([data.lower_face_rects[i] for i in indices.tolist()], device=device)  # (B, 4)
    inside = ((cols >= rects[:, 0:1]) & (cols < rects[:, 1:2]) & (rows >= rects[:, 2:3])
              & (rows < rects[:, 3:4]))
    loss = loss + config.ambient_weight * ramp(step, config.ambient_ramp_iters) * ambient_loss(
        amb_ray, inside.reshape(-1))
    return loss, batch_stats(loss, mse, samples_per_ray=bundle.n_samples / max(bundle.n_rays, 1))


def _global_rays_local_items(data: TalkingHeadDataset, indices: torch.Tensor, config: FitConfig,
                             device: torch.device):
    """(cameras, ray-sampling weights) of ALL items ``indices`` (B,), for the raysampler (every
    process marches the whole batch, see :mod:`.distributed`), and this process's share of
    ``indices`` (all of them in a single process), for everything after the raysampler."""
    return (data.cameras(indices, device), face_ray_weights(data, indices, config.face_ray_weight).to(device),
            indices[share(len(indices))])


def batch_stats(loss: torch.Tensor, mse: torch.Tensor, **means) -> Dict[str, float]:
    """A step's logged stats over the global batch: ``loss``, ``psnr`` of the batch MSE and the
    other per-process means ``means`` (numbers), each averaged over the processes (each holds an
    equal share of the rays)."""
    loss_v, mse_v, *rest = mean_over_ranks(loss.detach(), mse.detach(), *means.values())
    return {"loss": loss_v, "psnr": -10.0 * math.log10(max(mse_v, 1e-10)), **dict(zip(means, rest))}
