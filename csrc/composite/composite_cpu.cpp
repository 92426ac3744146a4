#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "common/cpu_utils.h"
#include "composite/composite_math.h"
#include "composite/composite.h"

namespace pt3d_radnerf {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cpu(
    const at::Tensor& values, const at::Tensor& deltas, const at::Tensor& features,
    const at::Tensor& ts, const at::Tensor& packed_info, const at::Tensor& transmittance,
    bool sigma_mode, double t_thresh, double eps) {
  const int64_t R = packed_info.size(0), C = features.size(1);
  at::Tensor out_feat = at::empty({R, C}, features.options());
  at::Tensor opacity = at::empty({R}, features.options());
  at::Tensor depth = at::empty({R}, features.options());
  at::Tensor trans_out = at::empty({R}, features.options());
  // Zero-filled: samples no ray owns keep weight 0.
  at::Tensor weights = at::zeros({values.size(0)}, features.options());
  const int64_t* info = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "composite_forward_cpu", [&] {
    const scalar_t* v = values.data_ptr<scalar_t>();
    const scalar_t* d = sigma_mode ? deltas.data_ptr<scalar_t>() : nullptr;
    const scalar_t* f = features.data_ptr<scalar_t>();
    const scalar_t* t = ts.data_ptr<scalar_t>();
    const scalar_t* tin = transmittance.data_ptr<scalar_t>();
    scalar_t* of = out_feat.data_ptr<scalar_t>();
    scalar_t* oo = opacity.data_ptr<scalar_t>();
    scalar_t* od = depth.data_ptr<scalar_t>();
    scalar_t* ot = trans_out.data_ptr<scalar_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    parallel_for_each(R, kGrainHeavy, [&](int64_t r) {
      composite_ray_forward<scalar_t>(v, d, f, t, info[2 * r], info[2 * r + 1], C, sigma_mode,
                                      static_cast<scalar_t>(t_thresh), static_cast<scalar_t>(eps),
                                      tin[r], of + r * C, oo + r, od + r, ot + r, w);
    });
  });
  return {out_feat, opacity, depth, weights, trans_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_backward_cpu(
    const at::Tensor& grad_features, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const at::Tensor& grad_transmittance, const at::Tensor& values, const at::Tensor& deltas,
    const at::Tensor& features, const at::Tensor& ts, const at::Tensor& packed_info,
    const at::Tensor& transmittance, bool sigma_mode, double t_thresh, double eps) {
  const int64_t R = packed_info.size(0), C = features.size(1);
  at::Tensor grad_values = at::zeros_like(values);
  at::Tensor grad_deltas = sigma_mode ? at::zeros_like(values) : at::empty({0}, values.options());
  at::Tensor grad_feats = at::zeros_like(features);
  at::Tensor grad_trans = at::empty_like(transmittance);
  const int64_t* info = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "composite_backward_cpu", [&] {
    const scalar_t* gf = grad_features.data_ptr<scalar_t>();
    const scalar_t* go = grad_opacity.data_ptr<scalar_t>();
    const scalar_t* gd = grad_depth.data_ptr<scalar_t>();
    const scalar_t* gt = grad_transmittance.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    const scalar_t* d = sigma_mode ? deltas.data_ptr<scalar_t>() : nullptr;
    const scalar_t* f = features.data_ptr<scalar_t>();
    const scalar_t* t = ts.data_ptr<scalar_t>();
    const scalar_t* tin = transmittance.data_ptr<scalar_t>();
    scalar_t* gv = grad_values.data_ptr<scalar_t>();
    scalar_t* gdl = sigma_mode ? grad_deltas.data_ptr<scalar_t>() : nullptr;
    scalar_t* gfi = grad_feats.data_ptr<scalar_t>();
    scalar_t* gti = grad_trans.data_ptr<scalar_t>();
    parallel_for_each(R, kGrainHeavy, [&](int64_t r) {
      gti[r] = composite_ray_backward<scalar_t>(
          gf + r * C, go[r], gd[r], gt[r], v, d, f, t, info[2 * r], info[2 * r + 1], C, sigma_mode,
          static_cast<scalar_t>(t_thresh), static_cast<scalar_t>(eps), tin[r], gv, gdl, gfi);
    });
  });
  return {grad_values, grad_deltas, grad_feats, grad_trans};
}

}  // namespace pt3d_radnerf
