// Occupancy-guided ray marching: per-ray math shared by the CPU loop and the CUDA kernel.
//
// Grid layout (shared with OccupancyGrid and packbits): cascade c covers the base box scaled by
// 2^c about its centre, split into res^3 cells (res a power of two); cell (x, y, z) of cascade c
// has index c * res^3 + morton(x, y, z), and its occupancy is bit (index & 7) of byte index >> 3.
//
// A ray o + t d (t in the caller's units, d of any length) is clipped to the outermost cascade
// box and to [max(t_min, t_start), t_max] (t_start: an optional per-ray resume depth), then
// stepped with the metric step rule
//   dt(t) = clamp(t |d| * dt_gamma, dt_min, dt_max);  step k covers [t, min(t + dt / |d|, far)).
// The lattice t_{k+1} = t_k + dt(t_k) / |d| is kept in the caller's units, so the march is
// memoryless in t: the returned t_end of a kept sample is the next lattice point bit for bit, and
// a march restarted there (t_start = t_end, no jitter) continues exactly as the single pass.
// A step is kept when the cell under its midpoint is occupied. The cell looked up is the one of
// cascade max(finest cascade containing the midpoint, finest cascade whose cells are at least dt
// wide) (instant-ngp's rule). An empty answer skips every lattice step whose midpoint lies before
// that cell's exit (minus a 1e-3-cell margin, so float rounding at the boundary never hides an
// occupied neighbour) and maps to the same cascade: samples stay on the same t lattice, and the
// kept set equals the one of a brute-force march over every step (so does a resumed march's).
#pragma once

#include "common/hd.h"
#include "morton3d/morton3d_math.h"
#include "near_far_from_aabb/near_far_from_aabb_math.h"

namespace pt3d_radnerf {

// Geometry of one cascade: lower corner, upper corner and cell size per axis.
template <typename T>
struct CascadeBox {
  T lo[3];
  T hi[3];
  T cs[3];
};

template <typename T>
PT3D_HD CascadeBox<T> cascade_box(const T* aabb, int cascade, int res) {
  CascadeBox<T> b;
  const T scale = static_cast<T>(1 << cascade);
  for (int i = 0; i < 3; ++i) {
    const T ctr = (aabb[i] + aabb[i + 3]) * T(0.5);
    const T half = (aabb[i + 3] - aabb[i]) * T(0.5) * scale;
    b.lo[i] = ctr - half;
    b.hi[i] = ctr + half;
    b.cs[i] = half * T(2) / static_cast<T>(res);
  }
  return b;
}

template <typename T>
PT3D_HD T min_cell_size(const CascadeBox<T>& b) {
  return min_value(b.cs[0], min_value(b.cs[1], b.cs[2]));
}

template <typename T>
struct CellLookup {
  CascadeBox<T> box;
  int cascade;
  int cell[3];
  bool occupied;
};

constexpr int kMaxCascades = 16;

template <typename T>
struct MarchParams {
  CascadeBox<T> boxes[kMaxCascades];  // filled once on the host (make_march_params)
  T min_cs[kMaxCascades];             // smallest cell side per cascade
  const uint8_t* bitfield;
  int cascades;
  int res;
  T t_min;
  T t_max;
  T dt_min;
  T dt_max;
  T dt_gamma;
  int64_t max_samples;  // < 0: unlimited
};

// Host side: the kernel's parameters, with the cascade boxes precomputed so the per-step
// lookups do no box arithmetic. Shared by the CPU and CUDA launchers.
template <typename T>
inline MarchParams<T> make_march_params(const uint8_t* bitfield, const T* aabb_host,
                                        int64_t cascades, int64_t resolution, double t_min,
                                        double t_max, double dt_min, double dt_max,
                                        double dt_gamma, int64_t max_samples) {
  MarchParams<T> p;
  p.bitfield = bitfield;
  p.cascades = static_cast<int>(cascades);
  p.res = static_cast<int>(resolution);
  for (int c = 0; c < p.cascades; ++c) {
    p.boxes[c] = cascade_box(aabb_host, c, p.res);
    p.min_cs[c] = min_cell_size(p.boxes[c]);
  }
  p.t_min = static_cast<T>(t_min);
  p.t_max = static_cast<T>(t_max);
  p.dt_min = static_cast<T>(dt_min);
  p.dt_max = static_cast<T>(dt_max);
  p.dt_gamma = static_cast<T>(dt_gamma);
  p.max_samples = max_samples;
  return p;
}

// Cascade whose cell decides a sample at point x taken with step dt: the coarser of the finest
// cascade containing x and the finest cascade whose cells are at least dt wide (instant-ngp).
template <typename T>
PT3D_HD int lookup_cascade(const T* x, T dt, const MarchParams<T>& p) {
  int c_pos = p.cascades - 1;
  for (int c = 0; c < p.cascades; ++c) {
    const CascadeBox<T>& b = p.boxes[c];
    if (x[0] >= b.lo[0] && x[0] <= b.hi[0] && x[1] >= b.lo[1] && x[1] <= b.hi[1] &&
        x[2] >= b.lo[2] && x[2] <= b.hi[2]) {
      c_pos = c;
      break;
    }
  }
  int c_dt = 0;
  while (c_dt < p.cascades - 1 && p.min_cs[c_dt] < dt) ++c_dt;
  return max_value(c_pos, c_dt);
}

// The cell (and its occupancy) that decides a sample at point x taken with step dt.
template <typename T>
PT3D_HD CellLookup<T> lookup_cell(const T* x, T dt, const MarchParams<T>& p) {
  CellLookup<T> r;
  r.cascade = lookup_cascade(x, dt, p);
  r.box = p.boxes[r.cascade];
  for (int i = 0; i < 3; ++i) {
    const T f = floor_value((x[i] - r.box.lo[i]) / r.box.cs[i]);
    const T clamped = clamp_value(f, T(0), static_cast<T>(p.res - 1));
    r.cell[i] = static_cast<int>(clamped);
  }
  const int64_t n3 = static_cast<int64_t>(p.res) * p.res * p.res;
  const int64_t idx = r.cascade * n3 + morton3d_encode(r.cell[0], r.cell[1], r.cell[2]);
  r.occupied = (p.bitfield[idx >> 3] >> (idx & 7)) & 1;
  return r;
}

// t (units of d) at which the ray o + t d leaves the looked-up cell.
template <typename T>
PT3D_HD T cell_exit(const T* o, const T* d, const CellLookup<T>& cell) {
  T t_exit = INFINITY;
  for (int i = 0; i < 3; ++i) {
    if (d[i] == T(0)) continue;
    const int k = d[i] > T(0) ? cell.cell[i] + 1 : cell.cell[i];
    const T bound = cell.box.lo[i] + static_cast<T>(k) * cell.box.cs[i];
    t_exit = min_value(t_exit, (bound - o[i]) / d[i]);
  }
  return t_exit;
}

// Metric step length at caller-unit depth t of a ray with |d| = norm.
template <typename T>
PT3D_HD T metric_step(T t, T norm, const MarchParams<T>& p) {
  return clamp_value(t * norm * p.dt_gamma, p.dt_min, p.dt_max);
}

// Marches one ray from max(box entry, t_min, t_start). With out_start/out_end null it only
// counts; otherwise it writes the kept samples' [t_start, t_end). Returns the number of samples.
// A NaN t_start marks a finished ray (no samples); pass -INFINITY (or t_min) for "no resume".
template <typename T>
PT3D_HD int64_t march_ray(const T* o, const T* d, T jitter, T t_start, const MarchParams<T>& p,
                          T* out_start, T* out_end) {
  if (t_start != t_start) return 0;
  const CascadeBox<T>& outer = p.boxes[p.cascades - 1];
  const T box[6] = {outer.lo[0], outer.lo[1], outer.lo[2], outer.hi[0], outer.hi[1], outer.hi[2]};
  const SlabHit<T> hit = ray_aabb_slab(o, d, box, max_value(p.t_min, t_start));
  if (!hit.hit) return 0;
  const T far = min_value(hit.far, p.t_max);
  if (!(far > hit.near)) return 0;

  const T norm = sqrt_value(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  T t = hit.near + jitter * metric_step(hit.near, norm, p) / norm;

  int64_t count = 0;
  while (t < far && (p.max_samples < 0 || count < p.max_samples)) {
    const T dt_m = metric_step(t, norm, p);
    // The one lattice update (also used by the skip loop below): t + dt_m / norm.
    const T t_next = t + dt_m / norm;
    if (!(t_next > t)) break;  // dt below t's precision (a ray from very far): stop, never spin
    const T t_end = min_value(t_next, far);
    const T t_mid = (t + t_end) * T(0.5);
    const T x[3] = {o[0] + t_mid * d[0], o[1] + t_mid * d[1], o[2] + t_mid * d[2]};
    const CellLookup<T> cell = lookup_cell(x, dt_m, p);
    if (cell.occupied) {
      if (out_start != nullptr) {
        out_start[count] = t;
        out_end[count] = t_end;
      }
      ++count;
      t = t_next;
      continue;
    }
    // Empty: jump over every lattice step whose midpoint is still inside this cell and would
    // be decided by the same cascade. Such a step would be rejected too, so skipping never
    // changes the sample set (the brute-force twin in reference.py marches every step).
    const T exit = cell_exit(o, d, cell) - T(1e-3) * min_cell_size(cell.box) / norm;
    t = t_next;
    while (t < far) {
      const T dt_next = metric_step(t, norm, p);
      const T t_after = t + dt_next / norm;
      if (!(t_after > t)) break;
      const T mid = (t + min_value(t_after, far)) * T(0.5);
      if (!(mid < exit)) break;
      const T xm[3] = {o[0] + mid * d[0], o[1] + mid * d[1], o[2] + mid * d[2]};
      if (lookup_cascade(xm, dt_next, p) != cell.cascade) break;
      t = t_after;
    }
  }
  return count;
}

}  // namespace pt3d_radnerf
