"""Fit speed on the synthetic talking head: our pipeline vs the stock PyTorch3D pipeline.

* ours: ``TalkingHeadTrainer`` = ImplicitRenderer(OccupancyGridRaysampler, OccupancyGridRaymarcher)
  + AudioRadianceField (grid encoders and occupancy marching in our kernels); rendering through
  the alive-ray compaction path.
* stock: ImplicitRenderer(MonteCarloRaysampler, EmissionAbsorptionRaymarcher) + a NeRF MLP on
  PyTorch3D's HarmonicEmbedding, conditioned on the same AudioNet + AudioAttNet audio code;
  rendering with NDCMultinomialRaysampler over the full image grid.

Both train on the same frames with the same batch (cameras x rays per step), MSE over the same
background, Adam; each run is timed until its validation PSNR (mean over ``--val-frames`` held-out
frames, checked every ``--check-every`` steps, validation time excluded) reaches ``--target-psnr``
or its training time exceeds ``--budget-s``. Printed: training rays/s, time to the target, render
ms per frame, and the ratios. ``--write-readme`` updates the ``fit-cpu`` table in README.md.
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch3d.renderer import (EmissionAbsorptionRaymarcher, HarmonicEmbedding, ImplicitRenderer,
                                MonteCarloRaysampler, NDCMultinomialRaysampler)

from common import fmt_rate, markdown_table, publish
from pt3d_radnerf.audio import attention_windows
from pt3d_radnerf.data import TalkingHeadDataset
from pt3d_radnerf.data.synthetic import ensure_synthetic
from pt3d_radnerf.models import AudioAttNet, AudioNet
from pt3d_radnerf.training.metrics import psnr
from pt3d_radnerf.training import FitConfig, TalkingHeadTrainer


class StockAudioNeRF(nn.Module):
    """PyTorch3D-tutorial style NeRF MLP with the RAD-NeRF audio code concatenated to the
    harmonic embedding of the points. Returns EA-raymarcher inputs (opacities, colours)."""

    def __init__(self, audio_width: int, audio_window: int, hidden: int = 128, harmonics: int = 10):
        super().__init__()
        self.embed_xyz = HarmonicEmbedding(harmonics)
        self.embed_dir = HarmonicEmbedding(4)
        self.audio_net = AudioNet(audio_width, 64, audio_window)
        self.audio_att = AudioAttNet(64, 8)
        dim_xyz = 3 * (2 * harmonics + 1)
        self.trunk = nn.Sequential(nn.Linear(dim_xyz + 64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.sigma = nn.Linear(hidden, 1)
        self.color = nn.Sequential(nn.Linear(hidden + 3 * 9, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 3))

    def forward(self, ray_bundle, audio=None, **kwargs):
        b = audio.shape[0]
        code = self.audio_att(self.audio_net(audio.flatten(0, 1)).view(b, 8, -1))  # (B, 64)
        lengths = ray_bundle.lengths  # (B, R, 1, P) or (B, H, W, P)
        pts = ray_bundle.origins[..., None, :] + lengths[..., None] * ray_bundle.directions[..., None, :]
        code = code.view(b, *([1] * (pts.dim() - 2)), -1).expand(*pts.shape[:-1], -1)
        h = self.trunk(torch.cat([self.embed_xyz(pts), code], -1))
        sigma = F.softplus(self.sigma(h))
        dirs = F.normalize(ray_bundle.directions, dim=-1)[..., None, :].expand(pts.shape)
        rgb = torch.sigmoid(self.color(torch.cat([h, self.embed_dir(dirs)], -1)))
        deltas = torch.cat([lengths[..., 1:] - lengths[..., :-1], torch.full_like(lengths[..., :1], 1e10)], -1)
        deltas = deltas * ray_bundle.directions.norm(dim=-1, keepdim=True)
        return 1.0 - torch.exp(-sigma * deltas[..., None]), rgb


class StockRun:
    """Training and rendering of the stock pipeline on a dataset."""

    def __init__(self, data: TalkingHeadDataset, cfg: FitConfig, n_pts: int):
        self.data, self.cfg = data, cfg
        _, window, width = data.audio_features.shape
        self.model = StockAudioNeRF(width, window)
        centres = data.cameras(range(len(data))).get_camera_center()
        dist = float(centres.norm(dim=-1).mean())
        radius = math.sqrt(1.0 + 0.25 + 1.0)  # RAD-NeRF head box half-diagonal
        self.depth = (max(dist - radius, 0.05), dist + radius)
        self.train_renderer = ImplicitRenderer(
            MonteCarloRaysampler(-1.0, 1.0, -1.0, 1.0, cfg.rays_per_camera, n_pts, *self.depth,
                                 stratified_sampling=True),
            EmissionAbsorptionRaymarcher())
        self.render_renderer = ImplicitRenderer(
            NDCMultinomialRaysampler(image_width=data.width, image_height=data.height, n_pts_per_ray=n_pts,
                                     min_depth=self.depth[0], max_depth=self.depth[1]),
            EmissionAbsorptionRaymarcher())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=5e-4)
        self.background = data.background.permute(2, 0, 1)[None]

    def _sample(self, images: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
        """Bilinear image values (B, R, 3) at NDC xys (B, R, 2) (+X left, +Y up)."""
        grid = torch.stack([-xys[..., 0], -xys[..., 1]], -1)[:, :, None]
        return F.grid_sample(images, grid, align_corners=False)[..., 0].permute(0, 2, 1)

    def train_step(self) -> None:
        idx = torch.randint(0, len(self.data), (self.cfg.cameras_per_step,))
        audio = attention_windows(self.data.audio_features, self.data.aud_index[idx])
        images, bundle = self.train_renderer(cameras=self.data.cameras(idx), volumetric_function=self.model,
                                             audio=audio)
        xys = bundle.xys
        target = torch.stack([self.data.image(int(i)) for i in idx]).permute(0, 3, 1, 2)
        gt = self._sample(target, xys)
        bg = self._sample(self.background.expand(len(idx), -1, -1, -1), xys)
        pred = images[..., :3] + (1.0 - images[..., 3:]) * bg
        loss = F.mse_loss(pred, gt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def render(self, data: TalkingHeadDataset, i: int) -> torch.Tensor:
        audio = attention_windows(data.audio_features, data.aud_index[i : i + 1])
        images, _ = self.render_renderer(cameras=data.cameras([i]), volumetric_function=self.model, audio=audio)
        rgb, alpha = images[0, ..., :3], images[0, ..., 3:]
        return (rgb + (1.0 - alpha) * data.background).clamp(0, 1)


def time_to_target(step_fn, validate, rays_per_step: int, target: float, budget: float, check_every: int):
    """Trains with ``step_fn`` until ``validate()`` >= target or ``budget`` s of training time.
    Returns (seconds or None, rays/s, last PSNR, steps)."""
    train_time, steps, last = 0.0, 0, float("nan")
    while train_time < budget:
        start = time.perf_counter()
        for _ in range(check_every):
            step_fn(steps)
            steps += 1
        train_time += time.perf_counter() - start
        last = validate()
        print(f"  {steps} steps, {train_time:.0f} s: validation PSNR {last:.2f} dB", flush=True)
        if last >= target:
            return train_time, rays_per_step * steps / train_time, last, steps
    return None, rays_per_step * steps / train_time, last, steps


def render_ms(render, frames) -> float:
    """Mean wall ms per frame of ``render(i)`` over ``frames``, after one untimed warm-up."""
    render(frames[0])
    start = time.perf_counter()
    for i in frames:
        render(i)
    return 1000 * (time.perf_counter() - start) / len(frames)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target-psnr", type=float, default=25.0)
    p.add_argument("--budget-s", type=float, default=600.0, help="training-time cap per pipeline")
    p.add_argument("--check-every", type=int, default=25)
    p.add_argument("--val-frames", type=int, default=4)
    p.add_argument("--render-frames", type=int, default=8, help="held-out frames timed for render ms")
    p.add_argument("--stock-pts", type=int, default=64, help="stock samples per ray")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--write-readme", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20 s budget, checks every 5 steps, 2 frames, no full default fit")
    args = p.parse_args()
    if args.quick and args.write_readme:
        p.error("--quick results are not README numbers: drop --write-readme")
    if args.quick:
        args.budget_s, args.check_every, args.val_frames, args.render_frames = 20.0, 5, 2, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_synthetic()
    train = TalkingHeadDataset(root, "train", cache_size=1024)
    val = TalkingHeadDataset(root, "val")
    picks = torch.linspace(0, len(val) - 1, args.val_frames).round().long().tolist()
    render_picks = torch.linspace(0, len(val) - 1, args.render_frames).round().long().tolist()
    cfg = FitConfig(validate_every=0)  # the default fit (make run): iters, schedule, sampling
    rays = cfg.cameras_per_step * cfg.rays_per_camera

    torch.manual_seed(0)
    ours = TalkingHeadTrainer(train, cfg, "/tmp/pt3d_radnerf_bench_fit", val_set=val)
    ours.mark_unseen()
    print("ours:")
    ours_t, ours_rate, ours_psnr, ours_steps = time_to_target(
        ours.train_step, lambda: ours.validate(args.val_frames), rays, args.target_psnr, args.budget_s,
        args.check_every)
    ours_ms_target = render_ms(lambda i: ours.head.render(val, i), render_picks)
    # Then the rest of the default fit (the model `make run` renders with): rendering cost
    # depends on how far training has pruned the occupancy grid and sharpened the head.
    full_iters = ours_steps if args.quick else cfg.iters
    start = time.perf_counter()
    for step in range(ours_steps, full_iters):
        ours.train_step(step)
    ours_full_s = time.perf_counter() - start
    ours_full_psnr = ours.validate(args.val_frames)
    ours_ms = render_ms(lambda i: ours.head.render(val, i), render_picks)
    print(f"  {max(full_iters, ours_steps)} steps (+{ours_full_s:.0f} s): validation PSNR "
          f"{ours_full_psnr:.2f} dB, render {ours_ms:.0f} ms/frame", flush=True)

    torch.manual_seed(0)
    stock = StockRun(train, cfg, args.stock_pts)
    print("stock:")
    stock_val = lambda: sum(psnr(stock.render(val, i), val.image(i)) for i in picks) / len(picks)
    stock_t, stock_rate, stock_psnr, stock_steps = time_to_target(
        lambda step: stock.train_step(), stock_val, rays, args.target_psnr, args.budget_s, args.check_every)
    stock_ms = render_ms(lambda i: stock.render(val, i), render_picks)

    def reach(t, last, steps):
        return f"{t:.0f} s ({steps} steps)" if t is not None else f"not reached in {args.budget_s:.0f} s ({steps} steps, {last:.1f} dB)"

    speed_t = (f"{stock_t / ours_t:.1f}x" if stock_t and ours_t else
               f">= {args.budget_s / ours_t:.1f}x" if ours_t else "n/a")
    rows = [
        ["training rays/s", fmt_rate(ours_rate), fmt_rate(stock_rate), f"{ours_rate / stock_rate:.1f}x"],
        [f"time to {args.target_psnr:.0f} dB validation PSNR", reach(ours_t, ours_psnr, ours_steps),
         reach(stock_t, stock_psnr, stock_steps), speed_t],
        [f"render ms/frame ({val.width}x{val.height}), ours at {args.target_psnr:.0f} dB ({ours_steps} steps)",
         f"{ours_ms_target:.0f}", f"{stock_ms:.0f}", f"{stock_ms / ours_ms_target:.1f}x"],
        [f"render ms/frame ({val.width}x{val.height}), ours after the default fit "
         f"({max(full_iters, ours_steps)} steps, {ours_full_psnr:.1f} dB)",
         f"{ours_ms:.0f}", f"{stock_ms:.0f}", f"{stock_ms / ours_ms:.1f}x"],
    ]
    table = markdown_table(["", "ours", "stock PyTorch3D", "ours vs stock"], rows)
    table += (f"\n\nBatch {cfg.cameras_per_step} x {cfg.rays_per_camera} rays; stock: "
              f"{args.stock_pts} points/ray, 4 x 128 MLP on 10 harmonics + audio code; validation on "
              f"{len(picks)} held-out frames every {args.check_every} steps (not timed); render time: mean "
              f"over {len(render_picks)} held-out frames.")
    publish("fit", "cpu", table, args.write_readme)


if __name__ == "__main__":
    main()
