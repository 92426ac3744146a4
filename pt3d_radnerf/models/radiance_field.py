"""AudioRadianceField: RAD-NeRF's audio-conditioned head field as a PyTorch3D implicit function.

Per sample point x (world, inside the head box) and ray direction d, for the audio window of the
sample's camera frame:

    enc_x      = HashGrid3D(x)                                (32)   spatial, tiled 16 x 2, 2^16
    audio_code = AudioAttNet(AudioNet(window))                (64)   one code per camera / frame
    amb        = tanh(ambient_net([enc_x, audio_code]))       (2)    "audio-spatial" coordinate
    enc_w      = HashGrid2D(amb)                              (32)   audio reaches density only here
    h          = sigma_net([enc_x, enc_w, eye])               (1 + 64)
    sigma      = trunc_exp(h[0]);  geo = h[1:]
    rgb        = sigmoid(color_net([SH4(d), geo, latent[frame]]))

``forward(ray_bundle, ...)`` follows PyTorch3D's implicit-function protocol and returns
``(densities, features)`` where densities are per-sample opacities ``1 - exp(-sigma * delta)``
(what both EmissionAbsorptionRaymarcher and OccupancyGridRaymarcher consume), for dense RayBundles
(..., P) and packed bundles (S,) (see :mod:`pt3d_radnerf.models.sampling`). Per-sample ambient
coordinates and sigmas are appended to a caller's ``aux_out`` dict for the ambient loss.

The field owns no occupancy grid: it exposes its head box ``aabb`` for the caller that builds one,
and ``density(points, ...)`` (sigma) for the grid's updates and the raysampler's pruning.

Every gather through which a gradient flows (per-camera audio codes, per-frame latent codes, eye
values) uses ``F.embedding``, whose CPU backward sums each row in a fixed order: training is
bitwise reproducible at any fixed thread count (advanced indexing's backward adds atomically).
"""

import math
import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio import ATTENTION_FRAMES, feature_type
from .audio_net import AudioAttNet, AudioNet
from .encoders import HashGridEncoder, SHEncoder
from .sampling import is_packed, ray_points, sample_camera_index

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


def _positive_int(name: str, value, low: int = 1, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def _finite_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class AudioRadianceField(nn.Module):
    """RAD-NeRF's head network (see module docstring) implementing PyTorch3D's implicit-function
    protocol.

    Args (plain Python values, validated here):
        audio_type: audio feature type name ("deepspeech" 29, "esperanto" 44, "wav2vec" 32,
            "hubert" 1024 x 2 frames, "logmel" 80) or an explicit ``(window, width)`` pair of ints,
            window in [1, 16].
        num_frames: number of per-frame latent codes (training frames), >= 1.
        aabb: head box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in RAD-NeRF's world, inside
            ``[-bound, bound]^3``; exposed as ``field.aabb`` for the caller's OccupancyGrid.
        bound: half-size of the cubic domain of the spatial hash grid (> 0).
        use_attention: smooth audio over 8 neighbouring frames (AudioAttNet).
        dim_aud: audio code size; ind_dim: per-frame latent code size; hidden: MLP width;
            geo_feat_dim: geometry feature size (all ints >= 1).
        default_eye: eye-area value used when none is given (finite).
        log2_hashmap_size: log2 of the table rows per hash-grid level, in [4, 24].
    """

    def __init__(self, audio_type: Union[str, Tuple[int, int]] = "deepspeech", num_frames: int = 10000,
                 aabb: Sequence[float] = RADNERF_AABB, bound: float = 1.0, use_attention: bool = True,
                 dim_aud: int = 64, ind_dim: int = 4, hidden: int = 64, geo_feat_dim: int = 64,
                 default_eye: float = 0.25, log2_hashmap_size: int = 16):
        super().__init__()
        if isinstance(audio_type, str):
            kind = feature_type(audio_type)
            self.audio_window, self.audio_width, self.audio_type = kind.window, kind.width, kind.name
        elif isinstance(audio_type, (tuple, list)) and len(audio_type) == 2:
            self.audio_window = _positive_int("audio_type window", audio_type[0], 1, 16)
            self.audio_width = _positive_int("audio_type width", audio_type[1])
            self.audio_type = "custom"
        else:
            raise ValueError(
                f"audio_type must be a feature type name (e.g. 'deepspeech') or a (window, width) pair "
                f"of ints, got {audio_type!r}"
            )
        self.num_frames = _positive_int("num_frames", num_frames)
        self.bound = _finite_float("bound", bound)
        if not self.bound > 0:
            raise ValueError(f"bound must be > 0, got {bound!r}")
        if isinstance(aabb, (str, bytes)) or not isinstance(aabb, Sequence) or len(aabb) != 6:
            raise ValueError(f"aabb must be 6 numbers (xmin, ymin, zmin, xmax, ymax, zmax), got {aabb!r}")
        self.aabb: Tuple[float, ...] = tuple(_finite_float("aabb", v) for v in aabb)
        if not all(lo < hi for lo, hi in zip(self.aabb[:3], self.aabb[3:])):
            raise ValueError(f"aabb needs min < max on every axis, got {self.aabb}")
        if min(self.aabb) < -self.bound or max(self.aabb) > self.bound:
            # The spatial grid gives zero features outside [-bound, bound]^3.
            raise ValueError(f"aabb {self.aabb} must lie inside [-bound, bound]^3 with bound = {self.bound}")
        if not isinstance(use_attention, bool):
            raise ValueError(f"use_attention must be a bool, got {use_attention!r}")
        self.use_attention = use_attention
        self.dim_aud = _positive_int("dim_aud", dim_aud)
        ind_dim, hidden = _positive_int("ind_dim", ind_dim), _positive_int("hidden", hidden)
        geo_feat_dim = _positive_int("geo_feat_dim", geo_feat_dim)
        self.default_eye = _finite_float("default_eye", default_eye)
        log2_hashmap_size = _positive_int("log2_hashmap_size", log2_hashmap_size, 4, 24)

        self.encoder = HashGridEncoder(input_dim=3, num_levels=16, level_dim=2, base_resolution=16,
                                       log2_hashmap_size=log2_hashmap_size, desired_resolution=int(2048 * self.bound),
                                       gridtype="tiled", bound=self.bound)
        self.encoder_ambient = HashGridEncoder(input_dim=2, num_levels=16, level_dim=2, base_resolution=16,
                                               log2_hashmap_size=log2_hashmap_size, desired_resolution=2048,
                                               gridtype="tiled", bound=1.0)
        self.audio_net = AudioNet(self.audio_width, self.dim_aud, self.audio_window)
        self.audio_att_net = AudioAttNet(self.dim_aud, ATTENTION_FRAMES) if use_attention else None
        self.ambient_net = mlp(self.encoder.output_dim + self.dim_aud, hidden, 2, 3)
        self.sigma_net = mlp(self.encoder.output_dim + self.encoder_ambient.output_dim + 1, hidden, 1 + geo_feat_dim, 3)
        self.encoder_dir = SHEncoder(degree=4)
        self.color_net = mlp(self.encoder_dir.output_dim + geo_feat_dim + ind_dim, hidden, 3, 2)
        self.individual_codes = nn.Parameter(torch.randn(self.num_frames, ind_dim) * 0.1)
        # Inference option, not part of the model: run query()'s MLPs under torch.autocast with
        # this dtype (e.g. torch.bfloat16; see README "Field"), outputs back in float32.
        self.mlp_autocast: Optional[torch.dtype] = None
        # Inference option: query() without grad and in float32 runs in pieces of this many points
        # (None: in one piece). A piece's MLP activations stay in cache: on 2 CPU threads float32
        # F.linear at the field's shapes runs ~2.5x faster per row at 4096 rows than at 2^17 (450^2
        # renders 1.0 -> 0.65 s). bfloat16 autocast GEMMs run best on whole calls (0.48 vs 0.62 s).
        self.query_chunk: Optional[int] = 4096

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

    # ---- audio and per-camera conditioning ----------------------------------------------------------
    def encode_audio(self, audio: Optional[torch.Tensor], batch: int = 1) -> torch.Tensor:
        """Audio code per camera: (B, dim_aud).

        ``audio``: (B, 8, W, C) attention windows (use_attention) or (B, W, C) single windows
        (one window without the batch dimension is B = 1); None means silence: ``batch`` zero codes.
        """
        device = self.individual_codes.device
        if audio is None:
            return torch.zeros(batch, self.dim_aud, device=device)
        if not isinstance(audio, torch.Tensor):
            raise TypeError(f"audio must be a torch.Tensor or None, got {type(audio).__name__}")
        layout = (ATTENTION_FRAMES, self.audio_window, self.audio_width) if self.use_attention else (
            self.audio_window, self.audio_width)
        given = tuple(audio.shape)
        if audio.dim() == len(layout):
            audio = audio[None]
        if audio.dim() != len(layout) + 1 or tuple(audio.shape[1:]) != layout:
            names = "(B, 8, W, C)" if self.use_attention else "(B, W, C)"
            raise ValueError(
                f"audio has shape {given}, but this field is configured for "
                f"'{self.audio_type}' features: {names} = (B, {', '.join(map(str, layout))}) with "
                f"W = {self.audio_window}, C = {self.audio_width}"
            )
        audio = audio.to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(audio).all()):
            raise ValueError("audio contains NaN or Inf values")
        if not self.use_attention:
            return self.audio_net(audio)
        b = audio.shape[0]
        codes = self.audio_net(audio.reshape(-1, self.audio_window, self.audio_width)).view(b, ATTENTION_FRAMES, -1)
        return self.audio_att_net(codes)

    def _audio_code(self, audio, audio_code) -> Optional[torch.Tensor]:
        """(B, dim_aud) from ``audio`` or a precomputed ``audio_code``; None when neither is given."""
        if audio_code is None:
            return None if audio is None else self.encode_audio(audio)
        if audio is not None:
            raise ValueError("pass either audio or its precomputed audio_code, not both")
        if not isinstance(audio_code, torch.Tensor) or audio_code.dim() != 2 or audio_code.shape[1] != self.dim_aud:
            shape = tuple(audio_code.shape) if isinstance(audio_code, torch.Tensor) else type(audio_code).__name__
            raise ValueError(f"audio_code must have shape (B, {self.dim_aud}), got {shape}")
        return audio_code.to(device=self.individual_codes.device, dtype=torch.float32)

    def _per_camera(self, values, batch: int, name: str, default, dtype) -> torch.Tensor:
        """(batch,) values: ``default`` when None, a scalar broadcast, or one value per camera."""
        if values is None:
            return torch.full((batch,), default, dtype=dtype, device=self.individual_codes.device)
        t = torch.as_tensor(values, dtype=dtype, device=self.individual_codes.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"{name} needs one value per camera ({batch}), got {t.numel()}")
        return t

    @staticmethod
    def _refuse(checks) -> None:
        """Raises ValueError(message) for the first (flag, message) whose 0-d bool flag is set
        (message: a str, or a callable giving it). The flags are read together: one host sync per
        field call (render loops call the field often)."""
        flags = torch.stack([flag.reshape(()) for flag, _ in checks]).tolist()
        for flag, (_, message) in zip(flags, checks):
            if flag:
                raise ValueError(message() if callable(message) else message)

    @staticmethod
    def _value_checks(audio_code: torch.Tensor, eye: torch.Tensor) -> List[Tuple[torch.Tensor, str]]:
        """(flag, message) checks of the per-camera conditioning values, for :meth:`_refuse`."""
        return [(~torch.isfinite(eye).all(), "eye contains NaN or Inf values"),
                (~torch.isfinite(audio_code).all(), "audio_code contains NaN or Inf values")]

    def _conditioning(self, batch: int, audio_code: Optional[torch.Tensor], eye) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-camera audio codes (batch, dim_aud) (silence when None) and eye values (batch,)."""
        if audio_code is None:
            audio_code = self.encode_audio(None, batch)
        if audio_code.shape[0] == 1 and batch > 1:
            audio_code = audio_code.expand(batch, -1)
        if audio_code.shape[0] != batch:
            raise ValueError(f"audio has {audio_code.shape[0]} windows for {batch} cameras")
        return audio_code, self._per_camera(eye, batch, "eye", self.default_eye, torch.float32)

    # ---- the field ---------------------------------------------------------------------------------
    def _ambient(self, enc_x: torch.Tensor, audio_code: torch.Tensor,
                 camera_index: Optional[torch.Tensor]) -> torch.Tensor:
        """tanh(ambient_net([enc_x, audio_code])) (N, 2), with the audio half of the first layer
        applied to each distinct code once: audio_code is (N, dim_aud) per point, (1, dim_aud)
        shared, or (B, dim_aud) per camera with ``camera_index`` (N,) picking each point's row.
        Saves the (N, 96) concatenation and two thirds of the first layer's multiply-adds."""
        first = self.ambient_net[0]
        dx = enc_x.shape[-1]
        h = F.linear(enc_x, first.weight[:, :dx], first.bias)
        a = F.linear(audio_code, first.weight[:, dx:])
        h = h + (F.embedding(camera_index, a) if camera_index is not None and a.shape[0] > 1 else a)
        for layer in self.ambient_net[1:]:
            h = layer(h)
        return torch.tanh(h)

    def _geometry(self, points, audio_code, eye, camera_index=None):
        """sigma (N,), geometry features (N, geo_feat_dim), ambient (N, 2); arguments as query's."""
        enc_x = self.encoder(points)
        ambient = self._ambient(enc_x, audio_code, camera_index)
        enc_w = self.encoder_ambient(ambient)
        h = self.sigma_net(torch.cat([enc_x, enc_w, eye], -1))
        return trunc_exp(h[:, 0]), h[:, 1:], ambient

    def query(self, points: torch.Tensor, dirs: torch.Tensor, audio_code: torch.Tensor, code: torch.Tensor,
              eye: torch.Tensor, camera_index: Optional[torch.Tensor] = None):
        """Per point: points (N, 3), unit dirs (N, 3), audio_code (N, dim_aud) (or (B, dim_aud) per
        camera with camera_index (N,), or (1, dim_aud) for all), latent code (N, ind_dim), eye (N, 1)
        -> sigma (N,), rgb (N, 3), ambient (N, 2). With ``mlp_autocast`` set (inference only,
        under ``torch.no_grad()``) the MLPs run in that dtype and the outputs come back in float32.
        Without grad and autocast, ``query_chunk`` points at a time (equal to one piece up to GEMM
        rounding)."""
        n, chunk = points.shape[0], self.query_chunk
        if chunk is not None and n > chunk and not torch.is_grad_enabled() and self.mlp_autocast is None:
            # Per-point inputs are cut; per-camera audio codes (with camera_index) or one shared
            # (1, dim_aud) code pass whole.
            per_point = camera_index is None and audio_code.shape[0] == n
            pieces = []
            for s in range(0, n, chunk):
                cut = slice(s, s + chunk)
                pieces.append(self._query(points[cut], dirs[cut], audio_code[cut] if per_point else audio_code,
                                          code[cut], eye[cut], None if camera_index is None else camera_index[cut]))
            return tuple(torch.cat(parts) for parts in zip(*pieces))
        return self._query(points, dirs, audio_code, code, eye, camera_index)

    def _query(self, points, dirs, audio_code, code, eye, camera_index):
        """query() in one piece."""
        if self.mlp_autocast is None:
            sigma, geo, ambient = self._geometry(points, audio_code, eye, camera_index)
            rgb = torch.sigmoid(self.color_net(torch.cat([self.encoder_dir(dirs), geo, code], -1)))
            return sigma, rgb, ambient
        if torch.is_grad_enabled():
            raise RuntimeError(f"mlp_autocast={self.mlp_autocast} is an inference option: query the field under "
                               f"torch.no_grad(), or set mlp_autocast = None to train")
        with torch.autocast(points.device.type, dtype=self.mlp_autocast):
            sigma, geo, ambient = self._geometry(points, audio_code, eye, camera_index)
            rgb = torch.sigmoid(self.color_net(torch.cat([self.encoder_dir(dirs), geo, code], -1)))
        return sigma.float(), rgb.float(), ambient.float()

    def density(self, points: torch.Tensor, audio: Optional[torch.Tensor] = None, eye=None,
                audio_code: Optional[torch.Tensor] = None, camera_index: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """sigma (N,) at world points (N, 3), with forward's per-camera conditioning.

        Args:
            audio: (B, 8, W, C) attention windows ((B, W, C) without attention; None = silence),
                or ``audio_code`` (B, dim_aud), a precomputed ``encode_audio(audio)``.
            eye: eye-area value(s): a number or (B,) (None = default_eye).
            camera_index: (N,) int64 camera of each point, in [0, B). Needed when the audio or eye
                has B > 1 cameras; with B == 1 every point uses camera 0 and it is ignored.
            kwargs: the renderer's other per-call keywords (e.g. ``frame_index``, which does not
                affect density), accepted and ignored as by :meth:`forward`.
        """
        if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[-1] != 3:
            shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise ValueError(f"points must have shape (N, 3), got {shape}")
        audio_code = self._audio_code(audio, audio_code)
        audio_rows = 1 if audio_code is None else audio_code.shape[0]
        eye_rows = 1 if eye is None else torch.as_tensor(eye).numel()
        if audio_rows > 1 and eye_rows > 1 and audio_rows != eye_rows:
            raise ValueError(f"audio is given for {audio_rows} cameras but eye for {eye_rows}: give one value "
                             f"per camera, or one shared by all")
        batch = max(audio_rows, eye_rows)
        audio_code, eye_v = self._conditioning(batch, audio_code, eye)
        n = points.shape[0]
        if batch == 1:
            self._refuse(self._value_checks(audio_code, eye_v))
            return self._geometry(points, audio_code, eye_v[:, None].expand(n, 1))[0]
        if not isinstance(camera_index, torch.Tensor) or camera_index.shape != (n,) or camera_index.is_floating_point():
            got = tuple(camera_index.shape) if isinstance(camera_index, torch.Tensor) else camera_index
            raise ValueError(f"camera_index must be an integer tensor of shape ({n},) when audio/eye are "
                             f"given for {batch} cameras, got {got}")
        camera_index = camera_index.to(device=points.device, dtype=torch.long)
        self._refuse(self._value_checks(audio_code, eye_v) + [
            (((camera_index < 0) | (camera_index >= batch)).any(),
             f"camera_index must lie in [0, {batch}) (the audio/eye cameras)")])
        eye_n = F.embedding(camera_index, eye_v[:, None])
        return self._geometry(points, audio_code, eye_n, camera_index)[0]

    @staticmethod
    def _camera_count(ray_bundle, cameras) -> int:
        """B, the number of cameras the per-camera arguments refer to."""
        if getattr(ray_bundle, "camera_counts", None) is not None:  # PyTorch3D's HeterogeneousRayBundle
            return len(cameras) if cameras is not None else int(ray_bundle.camera_ids.max()) + 1
        origins = ray_bundle.origins
        return origins.shape[0] if origins.dim() > 1 else 1

    def forward(self, ray_bundle, cameras=None, audio: Optional[torch.Tensor] = None,
                frame_index=None, eye=None, audio_code: Optional[torch.Tensor] = None,
                aux_out: Optional[Dict[str, List[torch.Tensor]]] = None, **kwargs):
        """PyTorch3D implicit function: returns (opacities, rgb).

        Dense RayBundle (B, ..., P): opacities (B, ..., P, 1), rgb (B, ..., P, 3).
        Packed bundle: (S,) and (S, 3) (flat densities: see models.sampling). ``audio`` (B, 8, W, C) per camera (None = silence),
        ``frame_index`` (B,) latent-code index per camera (None = code 0, as at inference),
        ``eye`` (B,) eye-area values (None = default_eye). ``audio_code`` (B, dim_aud): a
        precomputed ``encode_audio(audio)`` passed instead of ``audio``, for render loops that
        call the field many times per frame. A single audio window / eye value is shared by
        all cameras.

        ``aux_out``: a dict to which this call appends, in call order, ``"sigma"`` (S_call,) and
        ``"ambient"`` (S_call, 2) per sample (in the row-major order of the returned opacities),
        so the chunks of a chunked render concatenate in sample order. Other keywords (the
        renderer's per-call options) are ignored, as PyTorch3D's protocol requires.
        """
        if aux_out is not None and not isinstance(aux_out, dict):
            raise TypeError(f"aux_out must be a dict (of lists) or None, got {type(aux_out).__name__}")
        samples = ray_points(ray_bundle)
        lead_shape = samples.deltas.shape
        camera_index = sample_camera_index(ray_bundle).reshape(-1)
        batch = self._camera_count(ray_bundle, cameras)
        frame = self._per_camera(frame_index, batch, "frame_index", 0, torch.long)
        audio_code, eye_v = self._conditioning(batch, self._audio_code(audio, audio_code), eye)
        self._refuse([(((frame < 0) | (frame >= self.num_frames)).any(),
                       lambda: f"frame_index must lie in [0, {self.num_frames}), got {frame.tolist()}")]
                     + self._value_checks(audio_code, eye_v))
        code = F.embedding(frame.index_select(0, camera_index), self.individual_codes)
        sigma, rgb, ambient = self.query(samples.points.reshape(-1, 3), samples.directions.reshape(-1, 3), audio_code,
                                         code, F.embedding(camera_index, eye_v[:, None]), camera_index)
        alpha = 1.0 - torch.exp(-sigma * samples.deltas.reshape(-1))
        if aux_out is not None:
            aux_out.setdefault("sigma", []).append(sigma)
            aux_out.setdefault("ambient", []).append(ambient)
        # Packed: flat (S,) densities, which PyTorch3D's raymarchers refuse (models.sampling).
        density_shape = lead_shape if is_packed(ray_bundle) else (*lead_shape, 1)
        return alpha.view(density_shape), rgb.view(*lead_shape, 3)
