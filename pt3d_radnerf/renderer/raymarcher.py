"""OccupancyGridRaymarcher: a drop-in for PyTorch3D's EmissionAbsorptionRaymarcher.

Inside ``ImplicitRenderer`` it receives ``rays_densities``, ``rays_features`` and ``ray_bundle``:

* dense bundles (PyTorch3D ``RayBundle``): densities (..., P, 1), features (..., P, C) ->
  images (..., C + 1) = ``cat(features, opacity)``, exactly EmissionAbsorptionRaymarcher's layout
  and values (with ``t_thresh=0`` and no background);
* packed bundles (``PackedRayBundle``): densities (S, 1), features (S, C) -> images
  (*bundle.batch_shape, C + 1).

Extras, all optional and off the drop-in path:
* ``background``: scalar, colour (C,), per-ray (*batch, C) tensor, or image (B, H, W, C) for a
  full-grid bundle; blended as ``features + (1 - opacity) * background``;
* ``t_thresh``: early ray termination once transmittance < t_thresh (default 1e-4; 0 disables);
* ``density_mode="sigma"``: densities are sigma >= 0, converted with the bundle's deltas
  (packed: ``bundle.deltas()``; dense: ``diff(lengths) * |d|`` with PyTorch3D NeRF's 1e10 last
  interval);
* ``return_aux=True``: forward returns ``(images, aux)`` with ``aux = {"depth", "opacity",
  "weights"}`` (depth = sum_i w_i t_i in ``lengths`` units; weights shaped like the densities
  without the channel). ``ImplicitRenderer`` passes the tuple through unchanged, so
  ``(images, aux), bundle = renderer(...)``.

Every option except ``density_mode`` can be given to the constructor (default) or per call
through the renderer's kwargs (``RAYMARCHER_CALL_OPTIONS``); other kwargs (the field's, such as
``audio`` or ``aux_out``) are accepted and ignored, as by PyTorch3D's raymarchers.

Parity with ``EmissionAbsorptionRaymarcher``: per-call ``eps``; float16/bfloat16 inputs give
outputs of their dtype (compositing runs in float32); alpha densities outside [0, 1] raise
PyTorch3D's warning. Double backward (``create_graph=True``) is not supported: the compositing
kernel's backward is first-order, so it raises a RuntimeError saying so instead of returning
wrong higher-order gradients.

Packed bundles and PyTorch3D's raymarchers: a :class:`PackedRayBundle` has no ``lengths``, so a
field written for ``RayBundle`` (``ray_bundle_to_ray_points``) fails on it with an explanation
instead of feeding packed samples to ``EmissionAbsorptionRaymarcher``; a field that accepts
packed bundles must be paired with this raymarcher (PyTorch3D's would composite all (S,) samples
as one ray).
"""

from typing import Optional, Union

import torch
from pytorch3d.renderer.implicit.raymarching import _check_density_bounds, _check_raymarcher_inputs

from ..ops.composite import PYTORCH3D_EPS, composite, composite_dense
from .ray_bundle import PackedRayBundle

Background = Union[None, float, torch.Tensor]

# Options forward() takes per call (ImplicitRenderer passes every kwarg to every component).
RAYMARCHER_CALL_OPTIONS = ("background", "t_thresh", "return_aux", "eps")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on (densities, features) whose backward refuses ``create_graph=True``: the
    compositing kernel's backward is not itself differentiable."""

    @staticmethod
    def forward(ctx, densities, features):
        return densities.view_as(densities), features.view_as(features)

    @staticmethod
    def backward(ctx, grad_densities, grad_features):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "OccupancyGridRaymarcher does not support double backward (create_graph=True): "
                "its compositing kernel's backward is first-order only. Use PyTorch3D's "
                "EmissionAbsorptionRaymarcher where higher-order gradients are needed."
            )
        return grad_densities, grad_features


def _dense_deltas(ray_bundle) -> torch.Tensor:
    lengths = ray_bundle.lengths
    deltas = torch.cat([lengths[..., 1:] - lengths[..., :-1], torch.full_like(lengths[..., :1], 1e10)], -1)
    return deltas * ray_bundle.directions.norm(dim=-1, keepdim=True)


def blend_background(features: torch.Tensor, opacity: torch.Tensor, background: Background) -> torch.Tensor:
    """features (*batch, C) + (1 - opacity (*batch,)) * background (broadcast to (*batch, C))."""
    if background is None:
        return features
    bg = torch.as_tensor(background, dtype=features.dtype, device=features.device)
    if bg.dim() > 0 and bg.shape != features.shape and bg.shape != features.shape[-1:]:
        raise ValueError(
            f"background must be a scalar, a colour ({features.shape[-1]},) or shaped like the "
            f"rendered features {tuple(features.shape)}, got {tuple(bg.shape)}"
        )
    return features + (1.0 - opacity[..., None]) * bg


class OccupancyGridRaymarcher(torch.nn.Module):
    """Emission-absorption raymarcher over dense or packed samples (see module docstring).

    Args:
        background: default background (None = none, like PyTorch3D).
        t_thresh: early-termination transmittance (0 disables).
        density_mode: "alpha" (PyTorch3D's convention) or "sigma".
        eps: transmittance epsilon, PyTorch3D's 1e-10 by default.
        return_aux: return ``(images, aux)`` instead of images.
    """

    def __init__(self, background: Background = None, t_thresh: float = 1e-4,
                 density_mode: str = "alpha", eps: float = PYTORCH3D_EPS, return_aux: bool = False):
        super().__init__()
        if density_mode not in ("alpha", "sigma"):
            raise ValueError(f"density_mode must be 'alpha' or 'sigma', got {density_mode!r}")
        if t_thresh < 0:
            raise ValueError(f"t_thresh must be >= 0, got {t_thresh}")
        self.background, self.t_thresh, self.density_mode = background, t_thresh, density_mode
        self.eps, self.return_aux = eps, return_aux

    def forward(self, rays_densities: torch.Tensor, rays_features: torch.Tensor, ray_bundle=None,
                background: Background = None, t_thresh: Optional[float] = None,
                return_aux: Optional[bool] = None, eps: Optional[float] = None, **kwargs):
        """Composites ``rays_densities`` and ``rays_features`` (shapes: module doc).

        Per-call options override the constructor's; other kwargs are ignored.
        Returns images (..., C + 1), or ``(images, aux)`` with return_aux.
        """
        background = self.background if background is None else background
        t_thresh = self.t_thresh if t_thresh is None else t_thresh
        return_aux = self.return_aux if return_aux is None else return_aux
        eps = self.eps if eps is None else eps
        sigma = self.density_mode == "sigma"
        packed = isinstance(ray_bundle, PackedRayBundle)
        if not packed:
            _check_raymarcher_inputs(rays_densities, rays_features, None, z_can_be_none=True,
                                     features_can_be_none=False, density_1d=True)
        if not sigma and rays_densities.numel() > 0:
            _check_density_bounds(rays_densities)
        out_dtype = torch.promote_types(rays_densities.dtype, rays_features.dtype)
        if torch.is_grad_enabled() and (rays_densities.requires_grad or rays_features.requires_grad):
            rays_densities, rays_features = _FirstOrderOnly.apply(rays_densities, rays_features)
        if packed:
            feats, opacity, depth, weights = self._packed(rays_densities, rays_features, ray_bundle,
                                                          sigma, t_thresh, eps)
        else:
            lengths = getattr(ray_bundle, "lengths", None) if ray_bundle is not None else None
            if sigma and lengths is None:
                raise ValueError("density_mode='sigma' needs a ray_bundle with lengths for the deltas")
            feats, opacity, depth, weights, _ = composite_dense(
                rays_densities[..., 0], rays_features, lengths,
                _dense_deltas(ray_bundle) if sigma else None, self.density_mode, t_thresh, eps,
            )
        if out_dtype in _LOW_PRECISION:  # composited in float32; hand back the inputs' dtype
            feats, opacity, depth, weights = (x.to(out_dtype) for x in (feats, opacity, depth, weights))
        images = torch.cat([blend_background(feats, opacity, background), opacity[..., None]], -1)
        if return_aux:
            return images, {"depth": depth, "opacity": opacity, "weights": weights}
        return images

    def _packed(self, densities, features, bundle: PackedRayBundle, sigma: bool, t_thresh: float, eps: float):
        s = bundle.n_samples
        if densities.shape != (s, 1) or features.dim() != 2 or features.shape[0] != s:
            raise ValueError(
                f"packed bundles need rays_densities (S, 1) and rays_features (S, C) with S = {s} "
                f"samples, got {tuple(densities.shape)} and {tuple(features.shape)}"
            )
        feats, opacity, depth, weights, _ = composite(
            densities[:, 0], features, bundle.packed_info, bundle.t_mids(),
            bundle.deltas() if sigma else None, self.density_mode, t_thresh, eps,
        )
        shape = bundle.batch_shape
        return feats.view(*shape, -1), opacity.view(shape), depth.view(shape), weights
