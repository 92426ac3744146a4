"""A procedural low-poly talking head (about 1.7k triangles) with a speech-driven jaw and blinks,
and the neck and shoulders it sits on.

Built in the face tracker's world of RAD-NeRF data: head centred at the origin, +y up, the face
looking toward +z, sizes in tracker units (the loader scales by 4 into RAD-NeRF's box).
Features (eyes, brows, nose, mouth) are thin patches laid on the head's ellipsoid surface. The
neck and torso (:func:`build_torso`) are separate meshes in the same rest frame; the generator
moves them with their own pose (see ``synthetic.torso_transforms``).
"""

import functools
from dataclasses import dataclass

import numpy as np

A, B, C = 0.15, 0.2, 0.1  # ellipsoid half-extents: width (x), height (y), depth (z)
SKIN = (0.86, 0.66, 0.52)
HAIR = (0.23, 0.15, 0.10)
LIPS = (0.72, 0.26, 0.30)
MOUTH = (0.12, 0.03, 0.04)
SCLERA = (0.95, 0.95, 0.93)
PUPIL = (0.08, 0.06, 0.05)
BROW = (0.2, 0.13, 0.09)
JAW_TOP = -0.05  # below this height the jaw opens
JAW_DROP = 0.03  # chin displacement at full openness
LIFT = 0.004  # features float this far above the skin
NECK_SKIN = (0.74, 0.55, 0.43)  # in the head's shadow
SHIRT = (0.25, 0.38, 0.55)
COLLAR = (0.9, 0.9, 0.86)
NECK_PIVOT = (0.0, -0.3, -0.02)  # the neck's base: where the torso turns and where it follows the head


@dataclass
class HeadMesh:
    verts: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64
    colors: np.ndarray  # (V, 3) float32 in [0, 1]
    landmarks: np.ndarray  # (68, 3) float32, iBUG-68 order


def surface_z(x, y):
    """Front surface depth of the (undeformed) ellipsoid at (x, y)."""
    return C * np.sqrt(np.clip(1.0 - (x / A) ** 2 - (y / B) ** 2, 0.0, None))


def jaw_offset(y, openness):
    """Downward displacement of points below JAW_TOP: 0 at JAW_TOP, JAW_DROP * openness at the chin."""
    w = np.clip((JAW_TOP - y) / (B + JAW_TOP), 0.0, 1.0)
    return -JAW_DROP * openness * w


@functools.lru_cache(maxsize=None)
def _ellipsoid_cached(n_lat, n_lon):
    verts, faces = _ellipsoid_build(n_lat, n_lon)
    verts.flags.writeable = faces.flags.writeable = False
    return verts, faces


def _ellipsoid(n_lat=22, n_lon=36):
    """Vertices (V, 3) (a fresh copy: callers deform them) and faces of the head's ellipsoid."""
    verts, faces = _ellipsoid_cached(n_lat, n_lon)
    return verts.copy(), faces


def _ellipsoid_build(n_lat, n_lon):
    theta = np.linspace(0.0, np.pi, n_lat + 1)
    phi = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([A * np.sin(th) * np.cos(ph), B * np.cos(th), C * np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    faces = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [[a, c, b], [b, c, d]]
    return verts, np.array(faces)


def _patch(cx, cy, rx, ry, rings, colors, segments=16):
    """Elliptic patch centred (cx, cy): concentric rings at fractions `rings` of (rx, ry) with
    per-ring colours; vertex 0 is the centre (colour colors[0]). Returns verts (x, y) and faces."""
    pts = [(cx, cy)]
    cols = [colors[0]]
    ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    for r, col in zip(rings, colors[1:]):
        pts += list(zip(cx + r * rx * np.cos(ang), cy + r * ry * np.sin(ang)))
        cols += [col] * segments
    faces = [[0, 1 + (k + 1) % segments, 1 + k] for k in range(segments)]
    for ring in range(len(rings) - 1):
        o, n = 1 + ring * segments, 1 + (ring + 1) * segments
        for k in range(segments):
            k2 = (k + 1) % segments
            faces += [[o + k, o + k2, n + k], [o + k2, n + k2, n + k]]
    return np.array(pts), np.array(faces), np.array(cols)


def _mouth_geometry(openness):
    cy = -0.1 + jaw_offset(-0.1, openness) * 0.5
    return cy, 0.042, 0.004 + 0.026 * openness  # centre y, half-width, inner half-height


def build_head(openness: float, eye_open: float) -> HeadMesh:
    """Head mesh for a mouth openness and an eye openness, both in [0, 1]."""
    verts, faces = _ellipsoid()
    colors = np.tile(np.array(SKIN), (len(verts), 1))
    hair = (verts[:, 1] > 0.11) | ((verts[:, 2] < -0.01) & (verts[:, 1] > -0.06))
    colors[hair] = HAIR
    front = verts[:, 2] > 0
    verts[front, 1] += jaw_offset(verts[front, 1], openness)
    parts = [(verts, faces, colors)]

    def add(xy, f, cols, lift=LIFT):
        z = surface_z(xy[:, 0], xy[:, 1]) + lift
        parts.append((np.column_stack([xy, z]), f, cols))

    for side in (-1, 1):
        ex = 0.055 * side
        ry = 0.001 + 0.013 * eye_open
        add(*_patch(ex, 0.045, 0.024, ry, [0.45, 1.0], [PUPIL, PUPIL, SCLERA]))
        xy, f, cols = _patch(ex, 0.082, 0.026, 0.005, [1.0], [BROW, BROW], segments=8)
        add(xy, f, cols)
    # Nose: a small pyramid whose tip sticks out of the face.
    base = np.array([[-0.016, -0.03], [0.016, -0.03], [0.0, 0.04]])
    nose_xy = np.vstack([base, [[0.0, -0.02]]])
    nose_z = surface_z(nose_xy[:, 0], nose_xy[:, 1]) + np.array([0.0, 0.0, 0.0, 0.02])
    parts.append((np.column_stack([nose_xy, nose_z]), np.array([[0, 1, 3], [1, 2, 3], [2, 0, 3]]),
                  np.tile(np.array(SKIN) * 0.9, (4, 1))))
    my, mw, mh = _mouth_geometry(openness)
    xy, f, cols = _patch(0.0, my, mw, mh + 0.011, [mh / (mh + 0.011), 1.0], [MOUTH, MOUTH, LIPS], segments=20)
    add(xy, f, cols, lift=LIFT * 1.5)

    all_v, all_f, all_c, offset = [], [], [], 0
    for v, f, c in parts:
        all_v.append(v)
        all_f.append(f + offset)
        all_c.append(c)
        offset += len(v)
    return HeadMesh(np.vstack(all_v).astype(np.float32), np.vstack(all_f).astype(np.int64),
                    np.vstack(all_c).astype(np.float32), landmarks_3d(openness, eye_open))


def landmarks_3d(openness: float, eye_open: float) -> np.ndarray:
    """(68, 3) iBUG-68 landmarks on this head (subject's right = -x = image left)."""
    pts = []
    ang = np.linspace(np.pi, 2 * np.pi, 17)  # jaw line, ear to ear through the chin
    jaw = np.column_stack([0.9 * A * np.cos(ang), 0.93 * B * np.sin(ang) + 0.01])
    jaw[:, 1] += jaw_offset(jaw[:, 1], openness)
    pts += list(jaw)
    for side in (-1, 1):  # brows 17:22 (right), 22:27 (left), inner to outer ordering by x
        xs = 0.055 * side + np.linspace(-0.026, 0.026, 5)
        pts += list(np.column_stack([xs, np.full(5, 0.082)]))
    pts += [(0.0, y) for y in np.linspace(0.04, -0.005, 4)]  # nose bridge 27:31
    pts += [(x, -0.03) for x in np.linspace(-0.02, 0.02, 5)]  # nose bottom 31:36
    eye_ang = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])
    for side in (-1, 1):  # eyes 36:42, 42:48 (image y down: the upper lid has larger world y)
        ry = 0.001 + 0.013 * eye_open
        pts += list(np.column_stack([0.055 * side + 0.024 * np.cos(eye_ang), 0.045 + ry * np.sin(eye_ang)]))
    my, mw, mh = _mouth_geometry(openness)
    outer = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    pts += list(np.column_stack([mw * np.cos(outer), my + (mh + 0.011) * np.sin(outer)]))  # 48:60
    inner = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    pts += list(np.column_stack([0.8 * mw * np.cos(inner), my + mh * np.sin(inner)]))  # 60:68
    xy = np.array(pts, dtype=np.float64)
    return np.column_stack([xy, surface_z(xy[:, 0], xy[:, 1]) + LIFT]).astype(np.float32)


@dataclass
class TorsoMesh:
    verts: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64: the neck's first, then the torso's
    colors: np.ndarray  # (V, 3) float32 in [0, 1]
    neck_faces: int  # faces[:neck_faces] are the neck


def _loft(ys, half_x, half_z, centre_z, segments):
    """A tube of elliptic rings (one per height ``ys``, half-extents ``half_x``/``half_z``), faces
    facing outward; returns verts (R * segments, 3) and faces."""
    ang = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    verts = np.concatenate([np.column_stack([hx * np.cos(ang), np.full(segments, y), cz + hz * np.sin(ang)])
                            for y, hx, hz, cz in zip(ys, half_x, half_z, centre_z)])
    faces = []
    for r in range(len(ys) - 1):
        for k in range(segments):
            a, b = r * segments + k, r * segments + (k + 1) % segments
            faces += [[a, b, a + segments], [b, b + segments, a + segments]]
    return verts, np.array(faces)


def build_torso(segments: int = 24) -> TorsoMesh:
    """The neck (a skin-coloured tube from inside the head down into the torso) and the torso (a
    shirt whose cross-section widens from the collar into rounded shoulders), both at rest.

    Shading is baked into the vertex colours (darker toward the sides and under the chin), so the
    torso has smooth colour variation for the torso field to learn."""
    ny = np.linspace(-0.08, -0.32, 4)
    neck_v, neck_f = _loft(ny, np.full(4, 0.058), np.full(4, 0.05), np.full(4, -0.02), segments)
    shade = 0.8 + 0.2 * np.clip((-0.14 - neck_v[:, 1]) / 0.1, 0.0, 1.0)  # shadowed under the chin
    neck_c = np.array(NECK_SKIN)[None] * shade[:, None]

    # Shoulders: from the collar (y = -0.27, the neck's cross-section, so no gap shows) the
    # half-width grows like a quarter ellipse to 0.36.
    ty = -0.27 - 0.25 * np.linspace(0.0, 1.0, 9) ** 1.6  # down to y = -0.52, below the frame
    grow = np.sqrt(np.clip((-0.27 - ty) / 0.13, 0.0, 1.0))
    torso_v, torso_f = _loft(ty, 0.058 + 0.302 * grow, 0.05 + 0.08 * grow, np.full(9, -0.02), segments)
    side = np.abs(torso_v[:, 0]) / 0.36  # 0 at the middle, 1 at the shoulders' tips
    torso_c = np.array(SHIRT)[None] * (1.0 - 0.35 * side**2)[:, None]
    torso_c += np.array([0.05, 0.03, -0.04]) * np.sin(torso_v[:, 1] * 25.0)[:, None]  # soft folds
    collar = torso_v[:, 1] > -0.285
    torso_c[collar] = COLLAR
    verts = np.vstack([neck_v, torso_v])
    faces = np.vstack([neck_f, torso_f + len(neck_v)])
    colors = np.clip(np.vstack([neck_c, torso_c]), 0.0, 1.0)
    return TorsoMesh(verts.astype(np.float32), faces.astype(np.int64), colors.astype(np.float32), len(neck_f))
