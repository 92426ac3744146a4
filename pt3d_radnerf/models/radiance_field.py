"""AudioRadianceField: RAD-NeRF's audio-conditioned head field as a PyTorch3D implicit function.

Per sample point x (world, inside the head box) and ray direction d, for the audio window of the
sample's camera frame:

    enc_x   = HashGrid3D(x)                               (32)   spatial, tiled 16 x 2, 2^16
    enc_a   = AudioAttNet(AudioNet(window))                (64)   one code per camera / frame
    amb     = tanh(ambient_net([enc_x, enc_a]))            (2)    "audio-spatial" coordinate
    enc_w   = HashGrid2D(amb)                              (32)   audio reaches density only here
    h       = sigma_net([enc_x, enc_w, eye])               (1 + 64)
    sigma   = trunc_exp(h[0]);  geo = h[1:]
    rgb     = sigmoid(color_net([SH4(d), geo, latent[frame]]))

``forward(ray_bundle, ...)`` follows PyTorch3D's implicit-function protocol and returns
``(densities, features)`` where densities are per-sample opacities ``1 - exp(-sigma * delta)``
(what both EmissionAbsorptionRaymarcher and OccupancyGridRaymarcher consume), for dense RayBundles
(..., P) and PackedRayBundles (S,). The per-sample ambient coordinates and sigmas of the last call
are kept in ``self.last_aux`` for the ambient loss.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..renderer.occupancy_grid import OccupancyGrid
from ..renderer.ray_bundle import PackedRayBundle
from ..audio import ATTENTION_FRAMES, feature_type
from .audio_net import AudioAttNet, AudioNet
from .encoders import HashGridEncoder, SHEncoder

RADNERF_AABB = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)


class _TruncExp(torch.autograd.Function):
    """exp in the forward; the backward evaluates exp at the input clamped to [-15, 15] so a large
    pre-activation cannot blow up the gradient (RAD-NeRF's density activation)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def mlp(dim_in: int, dim_hidden: int, dim_out: int, num_layers: int) -> nn.Sequential:
    """Bias-free MLP with ReLU between layers (none after the last), as RAD-NeRF's heads."""
    layers = []
    for i in range(num_layers):
        layers.append(nn.Linear(dim_in if i == 0 else dim_hidden,
                                dim_out if i == num_layers - 1 else dim_hidden, bias=False))
        if i < num_layers - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class AudioRadianceField(nn.Module):
    """RAD-NeRF's head network (see module docstring) implementing PyTorch3D's implicit-function
    protocol; owns the ``occupancy_grid`` that OccupancyGridRaysampler marches through.

    Args:
        audio_type: audio feature type name ("deepspeech" 29, "esperanto" 44, "wav2vec" 32,
            "hubert" 1024 x 2 frames, "logmel" 80) or an explicit ``(window, width)``.
        num_frames: number of per-frame latent codes (training frames).
        aabb: head box in RAD-NeRF's world; ``bound`` = half-size of the cubic grid domain.
        use_attention: smooth audio over 8 neighbouring frames (AudioAttNet).
        default_eye: eye-area value used when none is given.
        grid_resolution: occupancy-grid cells per axis.
    """

    def __init__(self, audio_type: Union[str, Tuple[int, int]] = "deepspeech", num_frames: int = 10000,
                 aabb: Sequence[float] = RADNERF_AABB, bound: float = 1.0, use_attention: bool = True,
                 dim_aud: int = 64, ind_dim: int = 4, hidden: int = 64, geo_feat_dim: int = 64,
                 default_eye: float = 0.25, grid_resolution: int = 128, log2_hashmap_size: int = 16):
        super().__init__()
        if isinstance(audio_type, str):
            kind = feature_type(audio_type)
            self.audio_window, self.audio_width, self.audio_type = kind.window, kind.width, kind.name
        else:
            (self.audio_window, self.audio_width), self.audio_type = audio_type, "custom"
        self.bound, self.use_attention, self.default_eye = bound, use_attention, default_eye
        self.num_frames, self.dim_aud = num_frames, dim_aud
        self.encoder = HashGridEncoder(input_dim=3, num_levels=16, level_dim=2, base_resolution=16,
                                       log2_hashmap_size=log2_hashmap_size, desired_resolution=int(2048 * bound),
                                       gridtype="tiled", bound=bound)
        self.encoder_ambient = HashGridEncoder(input_dim=2, num_levels=16, level_dim=2, base_resolution=16,
                                               log2_hashmap_size=log2_hashmap_size, desired_resolution=2048,
                                               gridtype="tiled", bound=1.0)
        self.audio_net = AudioNet(self.audio_width, dim_aud, self.audio_window)
        self.audio_att_net = AudioAttNet(dim_aud, ATTENTION_FRAMES) if use_attention else None
        self.ambient_net = mlp(self.encoder.output_dim + dim_aud, hidden, 2, 3)
        self.sigma_net = mlp(self.encoder.output_dim + self.encoder_ambient.output_dim + 1, hidden, 1 + geo_feat_dim, 3)
        self.encoder_dir = SHEncoder(degree=4)
        self.color_net = mlp(self.encoder_dir.output_dim + geo_feat_dim + ind_dim, hidden, 3, 2)
        self.individual_codes = nn.Parameter(torch.randn(num_frames, ind_dim) * 0.1)
        self.occupancy_grid = OccupancyGrid(aabb=aabb, resolution=grid_resolution, cascades=1)
        self.last_aux: Dict[str, torch.Tensor] = {}

    # ---- parameter groups (RAD-NeRF: grids at lr, nets at lr_net, attention at 5 x lr_net) -----
    def param_groups(self, lr: float = 5e-3, lr_net: float = 5e-4):
        grids = list(self.encoder.parameters()) + list(self.encoder_ambient.parameters())
        attention = list(self.audio_att_net.parameters()) if self.audio_att_net is not None else []
        taken = {id(p) for p in grids + attention}
        nets = [p for p in self.parameters() if id(p) not in taken]
        groups = [{"name": "grids", "params": grids, "lr": lr}, {"name": "nets", "params": nets, "lr": lr_net}]
        if attention:
            groups.append({"name": "attention", "params": attention, "lr": 5 * lr_net})
        return groups

    # ---- audio -----------------------------------------------------------------------------------
    def encode_audio(self, audio: Optional[torch.Tensor], batch: int = 1) -> torch.Tensor:
        """Audio code per camera: (B, dim_aud).

        ``audio``: (B, 8, W, C) attention windows (use_attention) or (B, W, C) single windows;
        None means silence (a zero code).
        """
        device = self.individual_codes.device
        if audio is None:
            return torch.zeros(batch, self.dim_aud, device=device)
        want = 4 if self.use_attention else 3
        if audio.dim() == want - 1:
            audio = audio[None]
        if audio.dim() != want or tuple(audio.shape[-2:]) != (self.audio_window, self.audio_width):
            layout = "(B, 8, W, C)" if self.use_attention else "(B, W, C)"
            raise ValueError(
                f"audio has shape {tuple(audio.shape)}, but this field is configured for "
                f"'{self.audio_type}' features: {layout} with W = {self.audio_window}, C = {self.audio_width}"
            )
        audio = audio.to(device=device, dtype=torch.float32)
        if not self.use_attention:
            return self.audio_net(audio)
        b = audio.shape[0]
        codes = self.audio_net(audio.reshape(-1, self.audio_window, self.audio_width)).view(b, ATTENTION_FRAMES, -1)
        return self.audio_att_net(codes)

    # ---- the field ---------------------------------------------------------------------------------
    def _ambient(self, enc_x: torch.Tensor, enc_a: torch.Tensor, cam: Optional[torch.Tensor]) -> torch.Tensor:
        """tanh(ambient_net([enc_x, enc_a])) (N, 2), with the audio half of the first layer applied
        to each distinct code once: enc_a is (N, dim_aud) per point, (1, dim_aud) shared, or
        (B, dim_aud) per camera with ``cam`` (N,) picking each point's row. Saves the (N, 96)
        concatenation and two thirds of the first layer's multiply-adds."""
        first = self.ambient_net[0]
        dx = enc_x.shape[-1]
        h = torch.nn.functional.linear(enc_x, first.weight[:, :dx], first.bias)
        a = torch.nn.functional.linear(enc_a, first.weight[:, dx:])
        h = h + (a[cam] if cam is not None and a.shape[0] > 1 else a)
        for layer in self.ambient_net[1:]:
            h = layer(h)
        return torch.tanh(h)

    def _geometry(self, points, enc_a, eye, cam=None):
        enc_x = self.encoder(points)
        ambient = self._ambient(enc_x, enc_a, cam)
        enc_w = self.encoder_ambient(ambient)
        h = self.sigma_net(torch.cat([enc_x, enc_w, eye], -1))
        return trunc_exp(h[:, 0]), h[:, 1:], ambient

    def query(self, points: torch.Tensor, dirs: torch.Tensor, enc_a: torch.Tensor, code: torch.Tensor,
              eye: torch.Tensor, cam: Optional[torch.Tensor] = None):
        """Per point: points (N, 3), unit dirs (N, 3), enc_a (N, dim_aud) (or (B, dim_aud) per
        camera with cam (N,) indices, or (1, dim_aud) for all), code (N, ind_dim), eye (N, 1)
        -> sigma (N,), rgb (N, 3), ambient (N, 2)."""
        sigma, geo, ambient = self._geometry(points, enc_a, eye, cam)
        rgb = torch.sigmoid(self.color_net(torch.cat([self.encoder_dir(dirs), geo, code], -1)))
        return sigma, rgb, ambient

    def density(self, points: torch.Tensor, audio: Optional[torch.Tensor] = None,
                eye: Optional[float] = None, enc_a: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """sigma (N,) at points (N, 3) for one audio window (or code ``enc_a`` (dim_aud,))."""
        if enc_a is None:
            enc_a = self.encode_audio(audio)[0]
        n = points.shape[0]
        eye_t = torch.full((n, 1), self.default_eye if eye is None else float(eye), device=points.device)
        return self._geometry(points, enc_a.reshape(1, -1), eye_t)[0]

    def _per_camera(self, values, batch, name, default, dtype):
        if values is None:
            return torch.full((batch,), default, dtype=dtype, device=self.individual_codes.device)
        t = torch.as_tensor(values, dtype=dtype, device=self.individual_codes.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"{name} needs one value per camera ({batch}), got {t.numel()}")
        return t

    def forward(self, ray_bundle, cameras=None, audio: Optional[torch.Tensor] = None,
                frame_index=None, eye=None, audio_code: Optional[torch.Tensor] = None, **kwargs):
        """PyTorch3D implicit function: returns (opacities, rgb).

        Dense RayBundle (B, ..., P): opacities (B, ..., P, 1), rgb (B, ..., P, 3).
        PackedRayBundle: (S, 1) and (S, 3). ``audio`` (B, 8, W, C) per camera (None = silence),
        ``frame_index`` (B,) latent-code index per camera (None = code 0, as at inference),
        ``eye`` (B,) eye-area values (None = default_eye). ``audio_code`` (B, dim_aud): a
        precomputed ``encode_audio(audio)`` used instead of ``audio``, for render loops that
        call the field many times per frame.
        """
        packed = isinstance(ray_bundle, PackedRayBundle)
        batch = ray_bundle.origins.shape[0] if ray_bundle.origins.dim() > 1 else 1
        frame = self._per_camera(frame_index, batch, "frame_index", 0, torch.long)
        if ((frame < 0) | (frame >= self.num_frames)).any():
            raise ValueError(f"frame_index must lie in [0, {self.num_frames}), got {frame.tolist()}")
        eye_v = self._per_camera(eye, batch, "eye", self.default_eye, torch.float32)
        if audio_code is not None:
            if audio_code.dim() != 2 or audio_code.shape[1] != self.dim_aud:
                raise ValueError(f"audio_code must have shape (B, {self.dim_aud}), got {tuple(audio_code.shape)}")
            enc_a = audio_code.to(device=self.individual_codes.device, dtype=torch.float32)
        else:
            enc_a = self.encode_audio(audio, batch)
        if enc_a.shape[0] == 1 and batch > 1:
            enc_a = enc_a.expand(batch, -1)
        if enc_a.shape[0] != batch:
            raise ValueError(f"audio has {enc_a.shape[0]} windows for {batch} cameras")

        if packed:
            points = ray_bundle.sample_points()
            dirs = ray_bundle.sample_directions()
            rays_per_camera = max(ray_bundle.n_rays // batch, 1)
            cam = (ray_bundle.camera_ids.reshape(-1)[ray_bundle.ray_indices] if ray_bundle.camera_ids is not None
                   else torch.div(ray_bundle.ray_indices, rays_per_camera, rounding_mode="floor"))
            deltas = ray_bundle.deltas()
            lead_shape = (points.shape[0],)
        else:
            lengths = ray_bundle.lengths
            pts = ray_bundle.origins[..., None, :] + lengths[..., :, None] * ray_bundle.directions[..., None, :]
            lead_shape = pts.shape[:-1]
            points = pts.reshape(-1, 3)
            dirs = torch.nn.functional.normalize(ray_bundle.directions, dim=-1)[..., None, :].expand(pts.shape).reshape(-1, 3)
            cam = torch.arange(batch, device=points.device).view(-1, *([1] * (len(lead_shape) - 1))).expand(lead_shape).reshape(-1)
            if lengths.shape[-1] > 1:
                d = lengths[..., 1:] - lengths[..., :-1]
                d = torch.cat([d, d[..., -1:]], -1)  # the last sample keeps its neighbour's interval
            else:
                d = torch.full_like(lengths, 1e10)
            deltas = (d * ray_bundle.directions.norm(dim=-1, keepdim=True)).reshape(-1)
        sigma, rgb, ambient = self.query(points, dirs, enc_a, self.individual_codes[frame][cam], eye_v[cam, None], cam)
        alpha = 1.0 - torch.exp(-sigma * deltas)
        self.last_aux = {"sigma": sigma.view(lead_shape), "ambient": ambient.view(*lead_shape, 2)}
        return alpha.view(*lead_shape, 1), rgb.view(*lead_shape, 3)
