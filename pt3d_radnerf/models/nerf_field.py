"""HarmonicNeRFField: the NeRF of PyTorch3D's tutorial (``fit_simple_neural_radiance_field``),
ready for dense and packed ray bundles and for occupancy-grid updates.

Architecture (the tutorial's, with the MLP depth configurable): PyTorch3D's ``HarmonicEmbedding``
of the points with ``n_harmonic_functions`` frequencies ``omega_0 * 2^k`` (60 and 0.1 in the
tutorial; no raw input appended), an MLP of ``n_layers`` x ``n_hidden`` Softplus(beta=10)
layers, a density head Linear + Softplus(beta=10) whose bias starts at -1.5 (a transparent
start), and a colour head Linear + Softplus + Linear + Sigmoid on the features concatenated with
the harmonic embedding of the unit ray direction.

Density convention. The density head gives ``sigma = density_scale * softplus(.)`` in 1 / length
units; :meth:`HarmonicNeRFField.density` returns it (what ``OccupancyGrid.update`` wants) and
``forward`` returns each sample's opacity ``1 - exp(-sigma * delta)`` with the sample's metric
interval ``delta`` (:func:`pt3d_radnerf.models.ray_points`), the convention of PyTorch3D's
``EmissionAbsorptionRaymarcher`` and of ``OccupancyGridRaymarcher``'s default "alpha" mode, so
the field renders the same scene whatever the sampling rate. (The tutorial returns ``1 -
exp(-raw)`` per sample whatever its interval; at its step of (3.0 - 0.1) / 127 ~ 0.023 that is
``density_scale`` ~ 44, hence the default 40.)

With the tutorial's 60 frequencies the highest reach ``0.1 * 2^59``: in float32 those features
are not continuous functions of the point (as in the tutorial); the network learns from the low
ones.
"""

import torch
from pytorch3d.renderer import HarmonicEmbedding
from torch import nn

from .sampling import is_packed, ray_points


class HarmonicNeRFField(nn.Module):
    """PyTorch3D-tutorial NeRF field (module doc) for ``ImplicitRenderer``.

    Args:
        n_harmonic_functions: frequencies of the harmonic embedding (tutorial: 60).
        n_hidden: width of the MLP and of the colour head's hidden layer.
        n_layers: Linear + Softplus layers of the MLP (the tutorial has 2 x 256).
        omega_0: the lowest frequency (tutorial: 0.1).
        density_scale: sigma per unit of the density head's softplus output.
    """

    def __init__(self, n_harmonic_functions: int = 60, n_hidden: int = 128, n_layers: int = 4,
                 omega_0: float = 0.1, density_scale: float = 40.0) -> None:
        super().__init__()
        if n_harmonic_functions < 1 or n_hidden < 1 or n_layers < 1:
            raise ValueError(f"n_harmonic_functions, n_hidden and n_layers must be >= 1, got "
                             f"{n_harmonic_functions}, {n_hidden}, {n_layers}")
        if not density_scale > 0:
            raise ValueError(f"density_scale must be > 0, got {density_scale}")
        self.harmonic_embedding = HarmonicEmbedding(n_harmonic_functions, omega_0=omega_0, append_input=False)
        dim = 2 * 3 * n_harmonic_functions
        layers = []
        for i in range(n_layers):
            layers += [nn.Linear(dim if i == 0 else n_hidden, n_hidden), nn.Softplus(beta=10.0)]
        self.mlp = nn.Sequential(*layers)
        self.density_layer = nn.Sequential(nn.Linear(n_hidden, 1), nn.Softplus(beta=10.0))
        with torch.no_grad():
            self.density_layer[0].bias.fill_(-1.5)  # the tutorial's transparent start
        self.color_layer = nn.Sequential(nn.Linear(n_hidden + dim, n_hidden), nn.Softplus(beta=10.0),
                                         nn.Linear(n_hidden, 3), nn.Sigmoid())
        self.density_scale = float(density_scale)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Density sigma (...,) (1 / length) at world points (..., 3); the occupancy grid's
        ``density_fn`` (``OccupancyGrid.update(field.density, step)``)."""
        if points.shape[-1:] != (3,):
            raise ValueError(f"points must be shaped (..., 3), got {tuple(points.shape)}")
        return self._sigma(self.mlp(self.harmonic_embedding(points)))[..., 0]

    def _sigma(self, features: torch.Tensor) -> torch.Tensor:
        return self.density_layer(features) * self.density_scale

    def forward(self, ray_bundle, **kwargs):
        """Per-sample opacities and colours of a dense ``RayBundle`` or a ``PackedRayBundle``.

        Args:
            ray_bundle: dense (origins (..., 3), lengths (..., P)) or packed (S samples).
            kwargs: ignored (``ImplicitRenderer`` passes its kwargs to every component).
        Returns:
            densities (..., P, 1) or, packed, flat (S,) (see ``models.sampling``): opacity
            ``1 - exp(-sigma * delta)`` in [0, 1]; colours (..., P, 3) or (S, 3) in [0, 1].
        """
        p = ray_points(ray_bundle)
        features = self.mlp(self.harmonic_embedding(p.points))
        opacity = 1.0 - torch.exp(-self._sigma(features) * p.deltas[..., None])
        colors = self.color_layer(torch.cat([features, self.harmonic_embedding(p.directions)], -1))
        return (opacity[:, 0] if is_packed(ray_bundle) else opacity), colors
