"""Static-scene NeRF training, PyTorch3D's tutorial stock vs our occupancy-grid swap.

The training pipeline of ``examples/fit_nerf.py`` and ``benchmarks/bench_own_field.py``:
PyTorch3D's ``fit_simple_neural_radiance_field`` tutorial (:class:`HarmonicNeRFField`, Monte
Carlo rays, EmissionAbsorption raymarching, pseudo-Huber colour + silhouette loss, Adam with the
learning rate dropped 10x at 75% of the budget) in two variants with the same field and seed:

* ``"stock"``: ``MonteCarloRaysampler`` + ``EmissionAbsorptionRaymarcher`` (``n_pts`` samples
  per ray), full images with ``NDCMultinomialRaysampler`` in chunks of rays (the tutorial's
  ``batched_forward``);
* ``"swapped"``: an :class:`OccupancyGrid` (the stock sampling step) updated every step with
  ``grid.update(field.density, step)``, ``OccupancyGridRaysampler`` (samples in occupied cells
  only; in training also cut where each ray turns opaque, ``t_thresh``) and
  ``OccupancyGridRaymarcher`` (early ray termination); full images with :func:`render_compacted`.

:func:`train_side_by_side` runs them in alternation (the one with less training time so far
takes the next step), so a background load slows both alike; evaluation is off the clock.
"""

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, ImplicitRenderer, MonteCarloRaysampler,
                                NDCMultinomialRaysampler, RayBundle)

from ..models import HarmonicNeRFField
from ..renderer import OccupancyGrid, OccupancyGridRaymarcher, OccupancyGridRaysampler, ndc_extent, render_compacted

PIPELINES = ("stock", "swapped")


@dataclass
class NeRFFitConfig:
    """Hyperparameters shared by both pipelines (tutorial values in the field docs).

    Attributes:
        seconds: training budget per pipeline (the learning rate drops 10x at 75% of it).
        batch_cameras, rays: cameras per step and rays per camera (tutorial: 6 x 750).
        n_pts: stock samples per ray; also the swapped grid's step ``(far - near) / n_pts``
            (tutorial: 128).
        n_harmonic, hidden, layers: the field (tutorial: 60 harmonics; here 4 x 128).
        lr: Adam learning rate (tutorial: 1e-3).
        grid_resolution, cells_per_update: the swapped grid; its warm-up is two sweeps of
            every cell.
        grid_threshold: occupancy threshold, sigma; None: ``0.1 / step`` (one step absorbs
            ~10%: a seconds-old field is still foggy, at the grid default 0.01 / step most
            cells would stay occupied).
        train_t_thresh: the swapped training sampler's early termination (transmittance; 0:
            every occupied sample is trained).
        seed: both pipelines start from the same weights and draw their cameras from the same
            seed.
    """

    seconds: float = 60.0
    batch_cameras: int = 2
    rays: int = 256
    n_pts: int = 32
    n_harmonic: int = 60
    hidden: int = 128
    layers: int = 4
    lr: float = 1e-3
    grid_resolution: int = 32
    cells_per_update: int = 4096
    grid_threshold: Optional[float] = None
    train_t_thresh: float = 1e-4
    seed: int = 0


def huber(x: torch.Tensor, y: torch.Tensor, scaling: float = 0.1) -> torch.Tensor:
    """The tutorial's pseudo-Huber loss (per element)."""
    return ((1.0 + (x - y) ** 2 / scaling**2).clamp(1e-4).sqrt() - 1.0) * scaling


def sample_images_at_xys(images: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, n, C) of images (B, H, W, C) at NDC xys (B, n, 2) (+x left, +y up:
    grid_sample's axes negated, the edges of the image at the NDC extent)."""
    b, h, w = images.shape[:3]
    ex, ey = ndc_extent(h, w)
    grid = -xys.reshape(b, -1, 1, 2) / xys.new_tensor([ex, ey])
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, align_corners=False)
    return out[..., 0].permute(0, 2, 1)


def on_background(images: torch.Tensor, background: torch.Tensor):
    """(..., 4) raymarched rgb + opacity -> rgb over the background (..., 3), opacity (..., 1)."""
    return images[..., :3] + (1.0 - images[..., 3:]) * background, images[..., 3:]


class NeRFPipeline:
    """One training run ("stock" or "swapped", module doc): field, optimizer, training renderer,
    full-image render and bookkeeping.

    Attributes:
        seconds: wall time of the training steps so far; ``update_seconds``: the part of it in
            grid updates (swapped).
        steps, rays, samples: steps taken, rays and field samples they rendered.
        curve: (training seconds, PSNR) points appended by the caller's evaluation.
        grid: the swapped pipeline's :class:`OccupancyGrid` (None for stock).
    """

    def __init__(self, name: str, scene, config: NeRFFitConfig, device) -> None:
        if name not in PIPELINES:
            raise ValueError(f"name must be one of {PIPELINES}, got {name!r}")
        self.name, self.config = name, config
        torch.manual_seed(config.seed)  # both pipelines start from the same weights
        near, far = scene.min_depth, scene.max_depth
        # density_scale = 1 / stock step: the head's output r gives the tutorial's per-sample
        # opacity 1 - exp(-r) at the stock sampling rate (both pipelines share the field).
        field = HarmonicNeRFField(config.n_harmonic, config.hidden, config.layers,
                                  density_scale=config.n_pts / (far - near)).to(device)
        ex, ey = ndc_extent(*scene.image_size)
        h, w = scene.image_size
        self.grid = None
        if name == "stock":  # PyTorch3D's tutorial: Monte Carlo rays for training, EA raymarching
            sampler = MonteCarloRaysampler(min_x=-ex, max_x=ex, min_y=-ey, max_y=ey, n_rays_per_image=config.rays,
                                           n_pts_per_ray=config.n_pts, min_depth=near, max_depth=far)
            self.renderer = ImplicitRenderer(raysampler=sampler, raymarcher=EmissionAbsorptionRaymarcher())
            self.render_sampler = NDCMultinomialRaysampler(image_width=w, image_height=h, n_pts_per_ray=config.n_pts,
                                                           min_depth=near, max_depth=far)
        else:  # the swap: a grid at the stock sampling step, our raysampler and raymarcher
            sweep = math.ceil(config.grid_resolution**3 / config.cells_per_update)  # steps per sweep
            threshold = config.grid_threshold or 0.1 * config.n_pts / (far - near)
            self.grid = OccupancyGrid(aabb=scene.aabb, resolution=config.grid_resolution,
                                      step_size=(far - near) / config.n_pts, update_every=1, warmup_steps=2 * sweep,
                                      cells_per_update=config.cells_per_update, threshold=threshold).to(device)
            self.grid.mark_unseen(scene.cameras, scene.image_size)  # cells no training view sees stay empty
            # t_thresh: early ray termination in training too (nerfacc's early stop): a no-grad
            # density pass drops the samples behind the point where a ray turns opaque (weight
            # ~0, no gradient), so the field runs with grad only on the samples that count.
            sampler = OccupancyGridRaysampler(min_x=-ex, max_x=ex, min_y=-ey, max_y=ey, min_depth=near,
                                              max_depth=far, n_rays_per_image=config.rays, occupancy_grid=self.grid,
                                              t_thresh=config.train_t_thresh)
            self.renderer = ImplicitRenderer(raysampler=sampler, raymarcher=OccupancyGridRaymarcher())
            self.render_sampler = OccupancyGridRaysampler(image_width=w, image_height=h, min_depth=near,
                                                          max_depth=far, occupancy_grid=self.grid)
        self.field = field
        self.optimizer = torch.optim.Adam(field.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)  # camera draws
        self.seconds, self.update_seconds, self.steps, self.rays, self.samples = 0.0, 0.0, 0, 0, 0
        self.curve = []
        self._decayed = False

    def step(self, scene, background: torch.Tensor) -> None:
        """One tutorial training step on ``batch_cameras`` random views of ``scene``; adds its
        wall time to ``seconds``."""
        start = time.perf_counter()
        if not self._decayed and self.seconds >= 0.75 * self.config.seconds:  # the tutorial's lr drop
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.1
            self._decayed = True
        if self.grid is not None:
            self.grid.update(self.field.density, self.steps)
            self.update_seconds += time.perf_counter() - start
        idx = torch.randperm(len(scene), generator=self.generator)[: self.config.batch_cameras]
        images, bundle = self.renderer(cameras=scene.cameras[idx], volumetric_function=self.field)
        rgb, opacity = on_background(images, background)
        colors_at_rays = sample_images_at_xys(scene.images[idx], bundle.xys)
        silhouettes_at_rays = sample_images_at_xys(scene.silhouettes[idx, ..., None], bundle.xys)
        loss = huber(rgb, colors_at_rays).mean() + huber(opacity, silhouettes_at_rays).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.seconds += time.perf_counter() - start
        self.steps += 1
        self.rays += bundle.xys[..., 0].numel()
        self.samples += bundle.n_samples if self.grid is not None else bundle.lengths.numel()

    @torch.no_grad()
    def render(self, cameras, background: torch.Tensor, chunk_rays: int = 1024) -> torch.Tensor:
        """Full images (B, H, W, 3) over the background."""
        self.field.eval()
        if self.grid is not None:
            images = render_compacted(cameras, self.field, self.render_sampler, OccupancyGridRaymarcher())
        else:  # the tutorial's batched forward: the field on chunks of rays, then EA raymarching
            bundle = self.render_sampler(cameras=cameras)
            flat = [x.reshape(-1, x.shape[-1]) for x in (bundle.origins, bundle.directions, bundle.lengths, bundle.xys)]
            outputs = [self.field(RayBundle(*(x[s : s + chunk_rays] for x in flat)))
                       for s in range(0, flat[0].shape[0], chunk_rays)]
            shape = bundle.lengths.shape
            images = EmissionAbsorptionRaymarcher()(torch.cat([o[0] for o in outputs]).view(*shape, 1),
                                                    torch.cat([o[1] for o in outputs]).view(*shape, 3))
        self.field.train()
        return on_background(images, background)[0]


def train_side_by_side(
    pipelines: Dict[str, NeRFPipeline],
    scene,
    background: torch.Tensor,
    checkpoints: Sequence[float],
    evaluate: Callable[[NeRFPipeline], None],
    progress: Optional[Callable[[NeRFPipeline, float], None]] = None,
) -> None:
    """Trains every pipeline for its ``config.seconds`` in alternation (the one with the least
    training time steps next) and calls ``evaluate(p)`` (off the clock) at t = 0 and after
    every step that takes ``p.seconds`` past one or more of ``checkpoints`` (ascending seconds,
    first 0; one evaluation per step);
    ``progress(p, seconds_before)`` after every step."""
    for p in pipelines.values():
        evaluate(p)
    evaluated = {name: 1 for name in pipelines}
    while True:
        running = [p for p in pipelines.values() if p.seconds < p.config.seconds]
        if not running:
            break
        p = min(running, key=lambda q: q.seconds)
        before = p.seconds
        p.step(scene, background)
        passed = evaluated[p.name]
        while passed < len(checkpoints) and p.seconds >= checkpoints[passed]:
            passed += 1
        if passed > evaluated[p.name]:  # once per step, however many checkpoints it passed
            evaluate(p)  # the model at (about) this checkpoint's training time
            evaluated[p.name] = passed
        if progress is not None:
            progress(p, before)
