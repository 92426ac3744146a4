"""The packed ray bundle shared by OccupancyGridRaysampler, OccupancyGridRaymarcher and the field.

Rays keep PyTorch3D's layout (``origins``/``directions``/``xys`` shaped ``(*batch, 3|2)``, as in a
``RayBundle``); samples are packed nerfacc-style into flat arrays, so every ray can carry a
different number of samples and none is dropped.

Conventions:
  * ray ``r`` is ``origins.reshape(-1, 3)[r]`` (row-major flattening of the batch shape);
  * samples of one ray are contiguous and sorted by ``t``; ``packed_info[r] = (start, count)``;
  * ``t_starts``/``t_ends`` use the units of PyTorch3D's ``lengths``: a point is
    ``origin + t * direction``. With ``unit_directions=False`` (PyTorch3D's default) ``t`` is a
    camera-space z-depth, so the metric length of a sample is ``(t_end - t_start) * |direction|``;
    :meth:`PackedRayBundle.deltas` returns that metric length.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch


@dataclass
class PackedRayBundle:
    """Rays in PyTorch3D layout plus a variable number of samples per ray, packed.

    Attributes:
        origins: (*batch, 3) ray origins (world).
        directions: (*batch, 3) ray directions (world; unit length only if requested).
        xys: (*batch, 2) PyTorch3D NDC coordinates of each ray's pixel.
        ray_indices: (S,) int64, the flat ray index of each sample.
        t_starts: (S,) sample interval starts, in ``lengths`` units.
        t_ends: (S,) sample interval ends.
        packed_info: (R, 2) int64 ``(start, count)`` of each ray's samples, R = prod(batch).
        camera_ids: optional (*batch,) int64 camera of each ray (batched cameras).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    xys: torch.Tensor
    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    packed_info: torch.Tensor
    camera_ids: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        # Shapes only (no device sync): a bundle whose fields disagree would be composited wrongly.
        batch = tuple(self.origins.shape[:-1])
        n_rays = self.origins.numel() // 3 if self.origins.shape[-1:] == (3,) else -1
        s = tuple(self.t_starts.shape)
        checks = (
            ("origins", tuple(self.origins.shape[-1:]) == (3,), "(*batch, 3)"),
            ("directions", tuple(self.directions.shape) == (*batch, 3), f"{(*batch, 3)}"),
            ("xys", tuple(self.xys.shape) == (*batch, 2), f"{(*batch, 2)}"),
            ("t_starts", len(s) == 1, "(S,)"),
            ("t_ends", tuple(self.t_ends.shape) == s, f"{s} like t_starts"),
            ("ray_indices", tuple(self.ray_indices.shape) == s, f"{s} like t_starts"),
            ("packed_info", tuple(self.packed_info.shape) == (n_rays, 2),
             f"({n_rays}, 2): one (start, count) row per ray"),
            ("camera_ids", self.camera_ids is None or tuple(self.camera_ids.shape) == batch, f"{batch}"),
        )
        for name, ok, want in checks:
            if not ok:
                got = getattr(self, name)
                raise ValueError(f"PackedRayBundle.{name} must have shape {want}, got {tuple(got.shape)}")

    @property
    def batch_shape(self) -> Tuple[int, ...]:
        return tuple(self.origins.shape[:-1])

    @property
    def n_rays(self) -> int:
        return self.origins.numel() // 3

    @property
    def n_samples(self) -> int:
        return self.t_starts.shape[0]

    @property
    def lengths(self):
        """Absent on purpose: raises, so code written for PyTorch3D's dense ``RayBundle``
        (``ray_bundle_to_ray_points``, stock fields) fails here instead of mis-reading samples."""
        raise AttributeError(
            "PackedRayBundle has no dense `lengths`: rays carry different numbers of samples, "
            "packed as (S,) arrays. A field accepts packed bundles by taking its (S, 3) points "
            "from pt3d_radnerf.models.ray_points(bundle) (or bundle.sample_points()) and "
            "returning densities (S,) and features (S, C), composited by "
            "OccupancyGridRaymarcher (PyTorch3D's raymarchers composite dense (..., P) samples "
            "only). For a field written for RayBundle, use OccupancyGridRaysampler(mode='dense')."
        )

    def t_mids(self) -> torch.Tensor:
        """(S,) interval midpoints."""
        return 0.5 * (self.t_starts + self.t_ends)

    # Per-sample gathers use index_select: on the CPU, advanced indexing (x[ray_indices]) of
    # (R, 3) rows runs ~10x slower at these sizes, a visible share of an inference render.
    def sample_points(self) -> torch.Tensor:
        """(S, 3) world points at interval midpoints; differentiable w.r.t. origins/directions."""
        o = self.origins.reshape(-1, 3).index_select(0, self.ray_indices)
        d = self.directions.reshape(-1, 3).index_select(0, self.ray_indices)
        return o + self.t_mids()[:, None] * d

    def sample_directions(self, normalize: bool = True) -> torch.Tensor:
        """(S, 3) the direction of each sample's ray (unit length unless normalize=False)."""
        d = self.directions.reshape(-1, 3).index_select(0, self.ray_indices)
        return torch.nn.functional.normalize(d, dim=-1) if normalize else d

    def deltas(self) -> torch.Tensor:
        """(S,) metric interval lengths ``(t_end - t_start) * |direction|``."""
        d_norm = self.directions.reshape(-1, 3).norm(dim=-1).index_select(0, self.ray_indices)
        return (self.t_ends - self.t_starts) * d_norm


def packed_field_outputs(densities: torch.Tensor, features: torch.Tensor, n_samples: int):
    """Checks a field's outputs on a packed bundle of ``n_samples`` samples: densities (S,)
    (the packed convention, see ``pt3d_radnerf.models.sampling``) or (S, 1), features (S, C).
    Returns (densities (S,), features (S, C))."""
    if densities.dim() == 2 and densities.shape[1] == 1:
        densities = densities[:, 0]
    if densities.shape != (n_samples,) or features.dim() != 2 or features.shape[0] != n_samples:
        raise ValueError(
            f"on a packed bundle of S = {n_samples} samples the volumetric function must return "
            f"densities (S,) (or (S, 1)) and features (S, C), got {tuple(densities.shape)} and "
            f"{tuple(features.shape)}"
        )
    return densities, features


def pack_info(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """(R, 2) int64 ``(start, count)`` per ray from sorted (S,) ``ray_indices``."""
    counts = torch.bincount(ray_indices, minlength=n_rays)[:n_rays]
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], -1)


def exclusive_cumsum_per_ray(values: torch.Tensor, packed_info: torch.Tensor) -> torch.Tensor:
    """(S,) float64: for each packed sample, the sum of ``values`` (S,) over the earlier samples
    of its ray (0 at a ray's first sample). ``packed_info`` (R, 2) of (start, count), each ray's
    samples contiguous, starts ascending. One batch-wide cumsum minus its value at each ray's
    first sample, in float64 (differences of prefix sums over the whole batch)."""
    counts = packed_info[:, 1]
    ray = torch.repeat_interleave(torch.arange(len(counts), device=values.device), counts,
                                  output_size=values.shape[0])
    v = values.double()
    before = torch.cumsum(v, 0) - v  # over all earlier samples of the batch
    return before - before.index_select(0, packed_info[:, 0].index_select(0, ray))  # ... of the sample's ray only
