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

Every option can be given to the constructor (default) or per call through the renderer's kwargs.
"""

from typing import Optional, Union

import torch
from pytorch3d.renderer.implicit.raymarching import _check_raymarcher_inputs

from ..ops.composite import PYTORCH3D_EPS, composite, composite_dense
from .ray_bundle import PackedRayBundle

Background = Union[None, float, torch.Tensor]


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
                return_aux: Optional[bool] = None, **kwargs):
        background = self.background if background is None else background
        t_thresh = self.t_thresh if t_thresh is None else t_thresh
        return_aux = self.return_aux if return_aux is None else return_aux
        sigma = self.density_mode == "sigma"
        if isinstance(ray_bundle, PackedRayBundle):
            feats, opacity, depth, weights = self._packed(rays_densities, rays_features, ray_bundle, sigma, t_thresh)
        else:
            _check_raymarcher_inputs(rays_densities, rays_features, None, z_can_be_none=True,
                                     features_can_be_none=False, density_1d=True)
            lengths = getattr(ray_bundle, "lengths", None) if ray_bundle is not None else None
            if sigma and lengths is None:
                raise ValueError("density_mode='sigma' needs a ray_bundle with lengths for the deltas")
            feats, opacity, depth, weights, _ = composite_dense(
                rays_densities[..., 0], rays_features, lengths,
                _dense_deltas(ray_bundle) if sigma else None, self.density_mode, t_thresh, self.eps,
            )
        images = torch.cat([blend_background(feats, opacity, background), opacity[..., None]], -1)
        if return_aux:
            return images, {"depth": depth, "opacity": opacity, "weights": weights}
        return images

    def _packed(self, densities, features, bundle: PackedRayBundle, sigma: bool, t_thresh: float):
        s = bundle.n_samples
        if densities.shape != (s, 1) or features.dim() != 2 or features.shape[0] != s:
            raise ValueError(
                f"packed bundles need rays_densities (S, 1) and rays_features (S, C) with S = {s} "
                f"samples, got {tuple(densities.shape)} and {tuple(features.shape)}"
            )
        feats, opacity, depth, weights, _ = composite(
            densities[:, 0], features, bundle.packed_info, bundle.t_mids(),
            bundle.deltas() if sigma else None, self.density_mode, t_thresh, self.eps,
        )
        shape = bundle.batch_shape
        return feats.view(*shape, -1), opacity.view(shape), depth.view(shape), weights
