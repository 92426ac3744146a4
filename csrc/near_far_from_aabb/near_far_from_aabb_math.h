// Ray / axis-aligned box intersection (slab test): per-ray math shared by CPU and CUDA.
//
// A ray o + t d enters the box at t_near and leaves at t_far. Each axis with d != 0
// bounds t to [(lo - o) / d, (hi - o) / d] (sorted); an axis with d == 0 either holds
// the whole line (o inside the slab) or none of it. The entry is clamped to min_near.
// A miss is explicit (hit = false, near = far = min_near): no FLT_MAX ever leaves here.
// Non-finite inputs and all-zero directions are misses.
#pragma once

#include "common/hd.h"

namespace pt3d_radnerf {

template <typename T>
struct SlabHit {
  T near;
  T far;
  bool hit;
  int near_axis;  // axis whose slab sets `near`; -1 when min_near sets it (no gradient)
  int far_axis;   // axis whose slab sets `far`
};

template <typename T>
PT3D_HD SlabHit<T> ray_aabb_slab(const T* o, const T* d, const T* aabb, T min_near) {
  SlabHit<T> r;
  r.near = min_near;
  r.far = min_near;
  r.hit = false;
  r.near_axis = -1;
  r.far_axis = -1;

  T t_near = -INFINITY;
  T t_far = INFINITY;
  bool any_direction = false;
  for (int i = 0; i < 3; ++i) {
    if (!is_finite(o[i]) || !is_finite(d[i])) return r;
    const T lo = aabb[i];
    const T hi = aabb[i + 3];
    if (d[i] == T(0)) {
      if (o[i] < lo || o[i] > hi) return r;  // parallel to and outside this slab
      continue;
    }
    any_direction = true;
    const T inv = T(1) / d[i];
    T t0 = (lo - o[i]) * inv;
    T t1 = (hi - o[i]) * inv;
    if (t0 > t1) {
      const T tmp = t0;
      t0 = t1;
      t1 = tmp;
    }
    if (t0 > t_near) {
      t_near = t0;
      r.near_axis = i;
    }
    if (t1 < t_far) {
      t_far = t1;
      r.far_axis = i;
    }
  }
  if (!any_direction) return r;
  if (t_near < min_near) {
    t_near = min_near;
    r.near_axis = -1;
  }
  if (!(t_far > t_near)) {
    r.near_axis = -1;
    r.far_axis = -1;
    return r;
  }
  r.near = t_near;
  r.far = t_far;
  r.hit = true;
  return r;
}

// Vector-Jacobian product of (near, far) w.r.t. (o, d).
// For a slab boundary b on axis i: t = (b - o_i) / d_i, so dt/do_i = -1/d_i and
// dt/dd_i = -t/d_i. Misses and min_near-clamped entries carry no gradient.
template <typename T>
PT3D_HD void ray_aabb_slab_backward(const T* o, const T* d, const T* aabb, T min_near,
                                    T grad_near, T grad_far, T* grad_o, T* grad_d) {
  for (int i = 0; i < 3; ++i) {
    grad_o[i] = T(0);
    grad_d[i] = T(0);
  }
  const SlabHit<T> r = ray_aabb_slab(o, d, aabb, min_near);
  if (!r.hit) return;
  if (r.near_axis >= 0) {
    const int i = r.near_axis;
    grad_o[i] += -grad_near / d[i];
    grad_d[i] += -grad_near * r.near / d[i];
  }
  if (r.far_axis >= 0) {
    const int i = r.far_axis;
    grad_o[i] += -grad_far / d[i];
    grad_d[i] += -grad_far * r.far / d[i];
  }
}

}  // namespace pt3d_radnerf
