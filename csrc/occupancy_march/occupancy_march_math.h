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
// The lattice t_{k+1} = fl(t_k + fl(dt(t_k) / |d|)) is kept in the caller's units, so the march
// is memoryless in t: the returned t_end of a kept sample is the next lattice point bit for bit,
// and a march restarted there (t_start = t_end, no jitter) continues exactly as the single pass.
// A step is kept when the cell under its midpoint is occupied. The cell looked up is the one of
// cascade max(finest cascade containing the midpoint, finest cascade whose cells are at least dt
// wide) (instant-ngp's rule).
//
// Empty-space skipping never changes the kept set (it equals a lookup at every lattice step,
// MarchParams::skip = false, and the brute-force twin in reference.py): an empty answer finds
// the largest empty aligned block of 2^L cells around that cell (in morton order its 8^L bits
// are consecutive; blocks of 8^3 cells and up are read from a per-call summary, one bit per
// 8^3 block), and skips every lattice step whose midpoint lies before the block's exit (the
// block shrunk by kSkipMargin cells, so float rounding at its faces never hides an occupied
// neighbour), before the ray enters the next finer cascade's box (where that cascade would
// decide) and before dt grows past the cascade's cells (dt_gamma > 0). With a constant step
// (dt_gamma = 0 or dt_min = dt_max) the skip is a closed-form jump: inside one binade
// [2^(e-1), 2^e) of t, fl(t + s) adds the same multiple of t's ulp at every step, so
// t_k = t_0 + k (t_1 - t_0) exactly (checked on two steps, which rules out round-to-even ties).
//
// Bounded work and progress (errors, never a silent or endless march): a ray may span at most
// kMaxLatticeSteps lattice steps per call (skipped steps count, so the limit is a property of
// the lattice, not of the skipping), and a step that does not advance t in the rays' float
// precision (t + dt / |d| == t) is an error; march_ray returns kMarchTooLong / kMarchStuck.
#pragma once

#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "common/hd.h"
#include "morton3d/morton3d_math.h"
#include "near_far_from_aabb/near_far_from_aabb_math.h"

namespace pt3d_radnerf {

// At most this many lattice steps per ray and call (2^22, about 4.2 M): far above any useful
// march (a 128^3 grid's diagonal is ~220 steps of its cell size), low enough that a bad dt_min
// fails within a fraction of a second instead of hanging.
constexpr int64_t kMaxLatticeSteps = int64_t(1) << 22;
// march_ray's error results (sample counts are >= 0).
constexpr int64_t kMarchStuck = -1;    // t + dt / |d| == t: dt below the precision of t
constexpr int64_t kMarchTooLong = -2;  // more than kMaxLatticeSteps lattice steps
// Empty blocks are shrunk by this fraction of a cell before skipping to their exit: far above
// the rounding of a midpoint's cell coordinate, even in float32.
constexpr double kSkipMargin = 1.0 / 64.0;
// Blocks of 2^kSummaryLevel cells per axis are summarised by one bit (march_summary_byte).
constexpr int kSummaryLevel = 3;
constexpr int kMaxSkipLevel = 6;  // largest skipped block: 64^3 cells (64 summary bytes)

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
  uint32_t code;  // morton code of cell within its cascade
  bool occupied;
};

constexpr int kMaxCascades = 16;

template <typename T>
struct MarchParams {
  CascadeBox<T> boxes[kMaxCascades];  // filled once on the host (make_march_params)
  T min_cs[kMaxCascades];             // smallest cell side per cascade
  const uint8_t* bitfield;
  const uint8_t* summary;  // one bit per aligned 8^3-cell block (morton order), or null
  int cascades;
  int res;
  int64_t cells;   // res^3, cells per cascade
  int max_level;   // largest block size 2^max_level cells per axis that skipping considers
  bool skip;       // false: look up every lattice step (the reference for the skipping)
  bool const_step; // dt(t) == dt_min for every t: closed-form lattice jumps
  T t_min;
  T t_max;
  T dt_min;
  T dt_max;
  T dt_gamma;
  int64_t max_samples;  // < 0: unlimited
};

// Host side: whether skipping is disabled for debugging and tests (environment variable
// PT3D_RADNERF_MARCH_NO_SKIP=1: every lattice step is looked up; samples are identical).
inline bool march_skip_disabled() {
  const char* v = std::getenv("PT3D_RADNERF_MARCH_NO_SKIP");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

// Bytes of the per-call block summary: one bit per 8^3-cell block of every cascade (0 when
// res < 8: such grids are skipped by direct reads of the bitfield).
inline int64_t march_summary_bytes(int64_t cascades, int64_t resolution) {
  if (resolution < 8) return 0;
  return (cascades * resolution * resolution * resolution / 512 + 7) / 8;
}

// Summary byte b: bit k set when fine block 8 b + k (512 consecutive bitfield bits, i.e. 64
// bytes) has an occupied cell. `blocks` is the number of fine blocks over all cascades.
PT3D_HD uint8_t march_summary_byte(const uint8_t* bitfield, int64_t b, int64_t blocks) {
  uint8_t out = 0;
  for (int k = 0; k < 8; ++k) {
    const int64_t block = 8 * b + k;
    if (block >= blocks) break;
    uint8_t any = 0;
    for (int i = 0; i < 64; ++i) any |= bitfield[64 * block + i];
    out |= static_cast<uint8_t>(any != 0) << k;
  }
  return out;
}

// Host side: the kernel's parameters, with the cascade boxes precomputed so the per-step
// lookups do no box arithmetic. `summary` (march_summary_bytes, filled with
// march_summary_byte) may be null: skipping then reads blocks up to 8^3 cells directly.
template <typename T>
inline MarchParams<T> make_march_params(const uint8_t* bitfield, const uint8_t* summary,
                                        const T* aabb_host, int64_t cascades,
                                        int64_t resolution, double t_min, double t_max,
                                        double dt_min, double dt_max, double dt_gamma,
                                        int64_t max_samples) {
  MarchParams<T> p;
  p.bitfield = bitfield;
  p.summary = summary;
  p.cascades = static_cast<int>(cascades);
  p.res = static_cast<int>(resolution);
  p.cells = resolution * resolution * resolution;
  int log2_res = 0;
  while ((1 << log2_res) < p.res) ++log2_res;
  p.max_level = min_value(log2_res, summary != nullptr ? kMaxSkipLevel : kSummaryLevel);
  p.skip = !march_skip_disabled();
  for (int c = 0; c < p.cascades; ++c) {
    p.boxes[c] = cascade_box(aabb_host, c, p.res);
    p.min_cs[c] = min_cell_size(p.boxes[c]);
  }
  p.t_min = static_cast<T>(t_min);
  p.t_max = static_cast<T>(t_max);
  p.dt_min = static_cast<T>(dt_min);
  p.dt_max = static_cast<T>(dt_max);
  p.dt_gamma = static_cast<T>(dt_gamma);
  p.const_step = p.dt_gamma == T(0) || p.dt_min == p.dt_max;
  p.max_samples = max_samples;
  return p;
}

// Host side: the error for march_ray's result `code` on ray `ray`.
inline std::string march_error_message(int64_t code, int64_t ray, const char* dtype,
                                       double dt_min, double dt_max, double dt_gamma) {
  std::ostringstream m;
  m << "occupancy_march: ray " << ray;
  const auto steps = [&] {
    m << " (dt_min=" << dt_min << ", dt_max=" << dt_max << ", dt_gamma=" << dt_gamma << ")";
  };
  if (code == kMarchStuck) {
    m << " cannot advance: its step";
    steps();
    m << " divided by |d| is below the " << dtype << " precision of its depth t (t + dt / |d| "
      << "== t). Use a larger dt_min, float64 rays, or rays that start closer to the grid.";
  } else {
    m << " spans more than " << kMaxLatticeSteps << " lattice steps in one call";
    steps();
    m << ": use a larger dt_min (or dt_gamma > 0), or a smaller t_max.";
  }
  return m.str();
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
  r.code = morton3d_encode(r.cell[0], r.cell[1], r.cell[2]);
  const int64_t idx = r.cascade * p.cells + r.code;
  r.occupied = (p.bitfield[idx >> 3] >> (idx & 7)) & 1;
  return r;
}

// True when bits [first, first + count) of `bytes` are all zero; count is 1 or a multiple of
// 8 with first aligned to it (an aligned morton block).
PT3D_HD bool bits_clear(const uint8_t* bytes, int64_t first, int64_t count) {
  if (count == 1) return ((bytes[first >> 3] >> (first & 7)) & 1) == 0;
  uint8_t any = 0;
  for (int64_t i = first >> 3; i < (first + count) >> 3; ++i) any |= bytes[i];
  return any == 0;
}

// True when the aligned block of 2^level cells per axis holding cell `code` of `cascade` has
// no occupied cell (its 8^level bits are consecutive in morton order).
template <typename T>
PT3D_HD bool block_empty(int cascade, uint32_t code, int level, const MarchParams<T>& p) {
  const int64_t first = cascade * p.cells + ((static_cast<int64_t>(code) >> (3 * level)) << (3 * level));
  if (level < kSummaryLevel || p.summary == nullptr) {
    return bits_clear(p.bitfield, first, int64_t(1) << (3 * level));
  }
  return bits_clear(p.summary, first >> (3 * kSummaryLevel),
                    int64_t(1) << (3 * (level - kSummaryLevel)));
}

// Depth (units of d) before which every lattice-step midpoint is decided by the same empty
// cascade-`cell.cascade` block: the exit of the largest empty aligned block around `cell`
// (shrunk by kSkipMargin cells), cut at the entry into the next finer cascade's box when that
// cascade would decide there (dt below its cells). `t_mid` is the looked-up step's midpoint.
template <typename T>
PT3D_HD T empty_run_end(const T* o, const T* d, T t_mid, T dt, const CellLookup<T>& cell,
                        const MarchParams<T>& p) {
  const int c = cell.cascade;
  int level = 0;
  while (level < p.max_level && block_empty(c, cell.code, level + 1, p)) ++level;
  const CascadeBox<T>& b = cell.box;
  T stop = INFINITY;
  for (int i = 0; i < 3; ++i) {
    if (d[i] == T(0)) continue;
    const int first = (cell.cell[i] >> level) << level;
    const T margin = static_cast<T>(kSkipMargin);
    const T k = d[i] > T(0) ? static_cast<T>(first + (1 << level)) - margin
                            : static_cast<T>(first) + margin;
    stop = min_value(stop, (b.lo[i] + k * b.cs[i] - o[i]) / d[i]);
  }
  if (c > 0 && !(p.min_cs[c - 1] < dt)) {
    // The finer cascade c - 1 decides inside its box (grown by the margin): stop at its entry
    // unless the ray has left it behind.
    const CascadeBox<T>& f = p.boxes[c - 1];
    const T grow = static_cast<T>(kSkipMargin) * min_cell_size(b);
    const T box[6] = {f.lo[0] - grow, f.lo[1] - grow, f.lo[2] - grow,
                      f.hi[0] + grow, f.hi[1] + grow, f.hi[2] + grow};
    const SlabHit<T> hit = ray_aabb_slab(o, d, box, -static_cast<T>(INFINITY));
    if (hit.hit && hit.far >= t_mid) stop = min_value(stop, hit.near);
  }
  return stop;
}

// Metric step length at caller-unit depth t of a ray with |d| = norm.
template <typename T>
PT3D_HD T metric_step(T t, T norm, const MarchParams<T>& p) {
  return clamp_value(t * norm * p.dt_gamma, p.dt_min, p.dt_max);
}

// The power of two 2^e with t in [2^(e-1), 2^e) (t > 0 finite): the end of t's binade (for a
// subnormal t, 2 * FLT_MIN / DBL_MIN: the spacing is the same up to there).
PT3D_HD float binade_end(float t) {
#if defined(__CUDA_ARCH__)
  uint32_t bits = __float_as_uint(t);
#else
  uint32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
#endif
  if ((bits & 0x7f800000u) == 0) return 2.0f * FLT_MIN;
  bits = (bits & 0x7f800000u) + 0x00800000u;  // exponent + 1, mantissa 0
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  std::memcpy(&t, &bits, sizeof(bits));
  return t;
#endif
}

PT3D_HD double binade_end(double t) {
#if defined(__CUDA_ARCH__)
  uint64_t bits = static_cast<uint64_t>(__double_as_longlong(t));
#else
  uint64_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
#endif
  if ((bits & 0x7ff0000000000000ull) == 0) return 2.0 * DBL_MIN;
  bits = (bits & 0x7ff0000000000000ull) + 0x0010000000000000ull;
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(bits));
#else
  std::memcpy(&t, &bits, sizeof(bits));
  return t;
#endif
}

// Constant step s = dt_min / |d|: the largest k such that the lattice points t_1..t_k after t
// all lie before `limit` and inside t's binade, and t_k = t + k inc exactly (module comment);
// sets t = t_k and returns k (0: no jump, e.g. fewer than two steps to go).
template <typename T>
PT3D_HD int64_t lattice_jump(T& t, T s, T limit) {
  if (!(t > T(0))) return 0;
  const T hi = binade_end(t);
  const T t1 = t + s;
  if (!(t1 > t) || !(t1 < hi)) return 0;
  const T inc = t1 - t;  // exact: t and t1 share a binade
  const T t2 = t1 + s;
  if (!(t2 < hi) || t2 - t1 != inc) return 0;  // a round-to-even tie: increments alternate
  // limit - t is exact (Sterbenz) once limit <= hi <= 2t; the quotient rounds up by at most
  // half a step, so k = floor(q) - 1 keeps t_k < limit.
  const T q = (min_value(limit, hi) - t) / inc;
  if (!(q >= T(3))) return 0;
  const T k = floor_value(q) - T(1);
  t = t + k * inc;  // exact: a multiple of t's ulp inside its binade
  return static_cast<int64_t>(k);
}

// Advances t (the next lattice step to take) over every step whose midpoint lies before
// `stop` while cascade `cascade` decides (dt not above its cells), counting them in `steps`.
// Returns 0, or kMarchStuck / kMarchTooLong like march_ray.
template <typename T>
PT3D_HD int64_t skip_empty_steps(T& t, T stop, T far, T norm, int cascade,
                                 const MarchParams<T>& p, int64_t& steps) {
  if (p.const_step) {
    const T s = p.dt_min / norm;  // the bits of metric_step(t) / norm at every t
    // Jump, then step until the midpoint reaches stop; a step that crosses into the next
    // binade allows the next jump (at most ~2 steps after each jump).
    T jump_until = -INFINITY;
    while (t < far) {
      if (!(t < jump_until)) {
        steps += lattice_jump(t, s, min_value(stop, far));
        if (steps > kMaxLatticeSteps) return kMarchTooLong;
        jump_until = t > T(0) ? binade_end(t) : T(0);
      }
      const T t_after = t + s;
      if (!(t_after > t)) return kMarchStuck;
      if (!((t + min_value(t_after, far)) * T(0.5) < stop)) break;
      if (++steps > kMaxLatticeSteps) return kMarchTooLong;
      t = t_after;
    }
    return 0;
  }
  const bool coarser = cascade < p.cascades - 1;
  while (t < far) {
    const T dt = metric_step(t, norm, p);
    const T t_after = t + dt / norm;
    if (!(t_after > t)) return kMarchStuck;
    const T mid = (t + min_value(t_after, far)) * T(0.5);
    if (!(mid < stop)) break;
    if (coarser && p.min_cs[cascade] < dt) break;  // dt grew: a coarser cascade decides
    if (++steps > kMaxLatticeSteps) return kMarchTooLong;
    t = t_after;
  }
  return 0;
}

// Output of march_ray into two arrays (null: count only): sample k covers [t0, t1).
template <typename T>
struct SampleArrays {
  T* t_starts;
  T* t_ends;
  PT3D_HD void operator()(int64_t k, T t0, T t1) const {
    if (t_starts != nullptr) {
      t_starts[k] = t0;
      t_ends[k] = t1;
    }
  }
};

// Marches one ray from max(box entry, t_min, t_start), calling emit(k, t0, t1) for its k-th
// kept sample [t0, t1). Returns the number of samples, or kMarchStuck / kMarchTooLong (the
// samples emitted before are meaningless then). A NaN t_start marks a finished ray (no
// samples); pass -INFINITY (or t_min) for "no resume".
template <typename T, typename Emit>
PT3D_HD int64_t march_ray(const T* o, const T* d, T jitter, T t_start, const MarchParams<T>& p,
                          const Emit& emit) {
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
  int64_t steps = 0;
  while (t < far && (p.max_samples < 0 || count < p.max_samples)) {
    if (++steps > kMaxLatticeSteps) return kMarchTooLong;
    const T dt_m = metric_step(t, norm, p);
    // The one lattice update (also used by skip_empty_steps): t + dt_m / norm.
    const T t_next = t + dt_m / norm;
    if (!(t_next > t)) return kMarchStuck;
    const T t_end = min_value(t_next, far);
    const T t_mid = (t + t_end) * T(0.5);
    const T x[3] = {o[0] + t_mid * d[0], o[1] + t_mid * d[1], o[2] + t_mid * d[2]};
    const CellLookup<T> cell = lookup_cell(x, dt_m, p);
    if (cell.occupied) {
      emit(count, t, t_end);
      ++count;
      t = t_next;
      continue;
    }
    t = t_next;
    if (!p.skip) continue;
    const T stop = empty_run_end(o, d, t_mid, dt_m, cell, p);
    const int64_t status = skip_empty_steps(t, stop, far, norm, cell.cascade, p, steps);
    if (status < 0) return status;
  }
  return count;
}

}  // namespace pt3d_radnerf
