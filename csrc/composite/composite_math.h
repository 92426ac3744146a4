// Emission-absorption compositing along one ray: per-ray math shared by CPU and CUDA.
//
// Samples i = 0..count-1 of a ray carry an opacity a_i (given, or a_i = 1 - exp(-sigma_i delta_i)),
// features f_i (C) and a depth t_i. With the transmittance factor g_i = 1 + eps - a_i
// (eps as in PyTorch3D's EmissionAbsorptionRaymarcher; 0 gives the textbook 1 - a_i) and the
// ray's initial transmittance T_in (1 for a fresh ray),
//   T_0 = T_in,  T_{i+1} = T_i g_i,  w_i = a_i T_i,
//   features = sum w_i f_i,  opacity = sum w_i,  depth = sum w_i t_i,  T_out = T_n,
// where n is the number of samples composited. Early termination: when t_thresh > 0, the ray
// stops before the first sample with T_i < t_thresh; later samples get zero weight and zero
// gradient. Since T_i depends only on T_in and the samples before i, compositing a ray in
// consecutive pieces, each starting from the previous piece's T_out, gives the same weights,
// stopping point and T_out bit for bit (the piecewise sums then add up to the one-pass sums).
//
// Backward, with v_i = <dL/dfeatures, f_i> + dL/dopacity + dL/ddepth t_i (= dL/dw_i) and
// G = dL/dT_out:
//   dL/da_k = T_k (v_k - R_k),  R_k = sum_{i>k} v_i a_i prod_{k<j<i} g_j + G prod_{k<j<n} g_j,
// computed by the reverse recurrence R_{n-1} = G, R_{k-1} = v_k a_k + g_k R_k; and
// dL/dT_in = R_{-1}. No division by (1 - a) or by T_in, so opacities of exactly 1 and T_in = 0
// get exact gradients. For sigmas: da/dsigma = delta e^{-sigma delta},
// da/ddelta = sigma e^{-sigma delta}. Depths t_i receive no gradient.
#pragma once

#include "common/hd.h"

namespace pt3d_radnerf {

template <typename T>
struct SampleOpacity {
  T alpha;   // a_i
  T factor;  // g_i = 1 + eps - a_i
  T decay;   // e^{-sigma delta} in sigma mode (d alpha / d(sigma delta)), unused in alpha mode
};

template <typename T>
PT3D_HD SampleOpacity<T> sample_opacity(T value, T delta, bool sigma_mode, T eps) {
  SampleOpacity<T> s;
  if (sigma_mode) {
    s.decay = exp(-value * delta);
    s.alpha = T(1) - s.decay;
    s.factor = s.decay + eps;
  } else {
    s.decay = T(0);
    s.alpha = value;
    s.factor = T(1) + eps - value;
  }
  return s;
}

// Forward over one ray's samples [start, start + count), starting at transmittance trans_in.
// Writes the ray's outputs and every sample's weight (zeros past termination). Returns the
// number of samples composited.
template <typename T>
PT3D_HD int64_t composite_ray_forward(const T* values, const T* deltas, const T* feats,
                                      const T* ts, int64_t start, int64_t count, int64_t C,
                                      bool sigma_mode, T t_thresh, T eps, T trans_in, T* out_feat,
                                      T* out_opacity, T* out_depth, T* out_trans, T* weights) {
  for (int64_t c = 0; c < C; ++c) out_feat[c] = T(0);
  T trans = trans_in, opacity = T(0), depth = T(0);
  int64_t used = 0;
  for (; used < count; ++used) {
    const int64_t s = start + used;
    if (t_thresh > T(0) && trans < t_thresh) break;
    const SampleOpacity<T> o = sample_opacity(values[s], sigma_mode ? deltas[s] : T(0), sigma_mode, eps);
    const T w = o.alpha * trans;
    weights[s] = w;
    for (int64_t c = 0; c < C; ++c) out_feat[c] += w * feats[s * C + c];
    opacity += w;
    depth += w * ts[s];
    trans *= o.factor;
  }
  for (int64_t i = used; i < count; ++i) weights[start + i] = T(0);
  *out_opacity = opacity;
  *out_depth = depth;
  *out_trans = trans;
  return used;
}

// Backward over one ray; returns dL/dT_in. `grad_values` doubles as scratch for T_k during the
// forward sweep (so rays must not share samples). grad_deltas may be null (alpha mode).
template <typename T>
PT3D_HD T composite_ray_backward(const T* grad_feat, T grad_opacity, T grad_depth, T grad_trans_out,
                                 const T* values, const T* deltas, const T* feats, const T* ts,
                                 int64_t start, int64_t count, int64_t C, bool sigma_mode,
                                 T t_thresh, T eps, T trans_in, T* grad_values, T* grad_deltas,
                                 T* grad_feats) {
  // Forward sweep: transmittance before each sample, and where the ray stopped.
  T trans = trans_in;
  int64_t used = 0;
  for (; used < count; ++used) {
    const int64_t s = start + used;
    if (t_thresh > T(0) && trans < t_thresh) break;
    grad_values[s] = trans;
    trans *= sample_opacity(values[s], sigma_mode ? deltas[s] : T(0), sigma_mode, eps).factor;
  }
  for (int64_t i = used; i < count; ++i) {
    const int64_t s = start + i;
    grad_values[s] = T(0);
    if (grad_deltas) grad_deltas[s] = T(0);
    for (int64_t c = 0; c < C; ++c) grad_feats[s * C + c] = T(0);
  }
  // Reverse sweep.
  T rest = grad_trans_out;  // R_k
  for (int64_t i = used - 1; i >= 0; --i) {
    const int64_t s = start + i;
    const SampleOpacity<T> o = sample_opacity(values[s], sigma_mode ? deltas[s] : T(0), sigma_mode, eps);
    const T trans_s = grad_values[s];
    T v = grad_opacity + grad_depth * ts[s];
    const T w = o.alpha * trans_s;
    for (int64_t c = 0; c < C; ++c) {
      v += grad_feat[c] * feats[s * C + c];
      grad_feats[s * C + c] = w * grad_feat[c];
    }
    const T grad_alpha = trans_s * (v - rest);
    rest = v * o.alpha + o.factor * rest;
    if (sigma_mode) {
      grad_values[s] = grad_alpha * deltas[s] * o.decay;
      grad_deltas[s] = grad_alpha * values[s] * o.decay;
    } else {
      grad_values[s] = grad_alpha;
    }
  }
  return rest;  // R_{-1} = dL/dT_in
}

}  // namespace pt3d_radnerf
