"""Sample points of either ray-bundle kind, so an implicit function writes one code path.

PyTorch3D hands an implicit function a dense ``RayBundle``: rays ``origins``/``directions``
(..., 3) with ``lengths`` (..., P), P samples per ray, and expects ``(densities (..., P, 1),
features (..., P, C))`` back. OccupancyGridRaysampler's packed mode hands it a
``PackedRayBundle`` instead: the same rays plus S samples packed over them (``ray_indices`` (S,),
``t_starts``/``t_ends`` (S,), ``packed_info`` (R, 2)), and expects per-sample outputs
``(densities (S, 1), features (S, C))`` in the bundle's sample order.

To accept both kinds a field:
  1. gets its per-sample inputs from :func:`ray_points` (points, unit directions and metric
     interval lengths, shaped ``(..., P, ·)`` for dense bundles and ``(S, ·)`` for packed ones)
     instead of ``pytorch3d.renderer.implicit.utils.ray_bundle_to_ray_points`` (which needs the
     dense ``lengths`` a packed bundle does not have);
  2. evaluates its network on the flattened samples and reshapes the outputs back to the leading
     shape of ``points`` (``points.shape[:-1]``), with the output channels last;
  3. returns densities in the convention of the raymarcher it is used with (opacities in [0, 1]
     for EmissionAbsorptionRaymarcher / OccupancyGridRaymarcher's default "alpha" density_mode,
     e.g. ``1 - exp(-sigma * deltas)``);
  4. if it is conditioned per camera, maps each sample to its camera with
     :func:`sample_camera_index`.

Bundles are recognised by their attributes (duck typing), so this module does not import the
renderer: a packed bundle has ``ray_indices``, ``packed_info`` and the methods
``sample_points()``, ``sample_directions()`` and ``deltas()``.
"""

from typing import NamedTuple

import torch

# Interval length given to the last sample of a dense ray with one sample (PyTorch3D's
# EmissionAbsorption convention treats it as unbounded).
FAR_DELTA = 1e10


class RayPoints(NamedTuple):
    """Per-sample inputs of an implicit function.

    points: (..., 3) world sample points; directions: (..., 3) unit ray direction of each sample;
    deltas: (...) metric length of each sample's interval. The leading shape is (*batch, P) for a
    dense RayBundle and (S,) for a packed bundle.
    """

    points: torch.Tensor
    directions: torch.Tensor
    deltas: torch.Tensor


def is_packed(ray_bundle) -> bool:
    """True for a packed bundle (per-sample ``ray_indices`` and per-ray ``packed_info``)."""
    return hasattr(ray_bundle, "ray_indices") and hasattr(ray_bundle, "packed_info")


def ray_points(ray_bundle) -> RayPoints:
    """Sample points, unit directions and interval lengths of a dense or packed ray bundle.

    Dense (``origins``/``directions`` (*batch, 3), ``lengths`` (*batch, P)): points at
    ``origins + lengths * directions`` (as PyTorch3D's ``ray_bundle_to_ray_points``), deltas
    ``(lengths[k+1] - lengths[k]) * |direction|`` with the last sample keeping its neighbour's
    interval (``FAR_DELTA`` when P == 1). Packed: the bundle's ``sample_points()``,
    ``sample_directions()`` and ``deltas()`` (interval midpoints and metric interval lengths).

    Returns:
        :class:`RayPoints` with leading shape (*batch, P) (dense) or (S,) (packed).
    """
    if is_packed(ray_bundle):
        return RayPoints(ray_bundle.sample_points(), ray_bundle.sample_directions(), ray_bundle.deltas())
    for name in ("origins", "directions", "lengths"):
        if not isinstance(getattr(ray_bundle, name, None), torch.Tensor):
            raise TypeError(
                f"ray_bundle must be a RayBundle-like object with tensor `{name}` (or a packed bundle "
                f"with ray_indices/packed_info), got {type(ray_bundle).__name__}"
            )
    origins, directions, lengths = ray_bundle.origins, ray_bundle.directions, ray_bundle.lengths
    if origins.shape[-1:] != (3,) or directions.shape != origins.shape or lengths.shape[:-1] != origins.shape[:-1]:
        raise ValueError(
            f"ray_bundle needs origins/directions (..., 3) and lengths (..., P) with the same leading "
            f"shape, got {tuple(origins.shape)}, {tuple(directions.shape)}, {tuple(lengths.shape)}"
        )
    points = origins[..., None, :] + lengths[..., :, None] * directions[..., None, :]
    unit = torch.nn.functional.normalize(directions, dim=-1)[..., None, :].expand(points.shape)
    if lengths.shape[-1] > 1:
        step = lengths[..., 1:] - lengths[..., :-1]
        step = torch.cat([step, step[..., -1:]], -1)  # the last sample keeps its neighbour's interval
    else:
        step = torch.full_like(lengths, FAR_DELTA)
    return RayPoints(points, unit, step * directions.norm(dim=-1, keepdim=True))


def sample_camera_index(ray_bundle) -> torch.Tensor:
    """int64 camera of each sample, shaped as :func:`ray_points`' leading shape.

    The camera of a ray is, in order of precedence: a packed bundle's ``camera_ids`` (*batch,)
    (one per ray); for PyTorch3D's ``HeterogeneousRayBundle`` (``camera_counts`` set), its
    ``camera_ids`` repeated ``camera_counts`` times (rays are grouped by camera); otherwise the
    first batch index of ``origins`` (*batch, 3), PyTorch3D's one-row-per-camera layout (every ray
    is camera 0 when ``origins`` is (3,)).
    """
    origins = ray_bundle.origins
    batch = origins.shape[0] if origins.dim() > 1 else 1
    camera_ids = getattr(ray_bundle, "camera_ids", None)
    if is_packed(ray_bundle):
        ray_indices = ray_bundle.ray_indices
        if camera_ids is not None:
            return camera_ids.reshape(-1).index_select(0, ray_indices)
        rays_per_camera = max(origins.numel() // 3 // batch, 1)
        return torch.div(ray_indices, rays_per_camera, rounding_mode="floor")
    lead = (*origins.shape[:-1], ray_bundle.lengths.shape[-1])
    camera_counts = getattr(ray_bundle, "camera_counts", None)
    if camera_ids is not None and camera_counts is not None:
        per_ray = torch.repeat_interleave(camera_ids.to(origins.device), camera_counts.to(origins.device))
    else:
        per_ray = torch.arange(batch, device=origins.device)
    return per_ray.view(-1, *([1] * (len(lead) - 1))).expand(lead)
