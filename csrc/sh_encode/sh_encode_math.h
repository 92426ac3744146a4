// Real spherical harmonics of a direction, degree 1..8 (degree^2 outputs), per-element math
// shared by the CPU loop and the CUDA kernel. No torch headers.
//
// Order and signs follow tiny-cuda-nn / torch-ngp (what RAD-NeRF checkpoints expect): output
// l*l + l + m for band l and order m in [-l, l], Condon-Shortley phase included, so band 1 is
// (-c y, c z, -c x). The basis is evaluated as polynomials in (x, y, z) with x^2+y^2+z^2 = 1
// substituted into the z-part (the input is NOT renormalised), and the input gradient is the
// gradient of those polynomials:
//   Y_l^m = n_lm * Q_l^|m|(z) * (Re (x+iy)^|m|  for m >= 0,  Im (x+iy)^|m|  for m < 0),
//   Q_l^m = d^m P_l / dz^m (integer recurrences), n_lm from ShNorm.
#pragma once

#include "common/hd.h"

namespace pt3d_radnerf {

constexpr int kShMaxDegree = 8;

// n_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!), times sqrt(2) (-1)^m for m > 0 (host-computed).
struct ShNorm {
  double n[kShMaxDegree][kShMaxDegree];
};

// Evaluates the degree^2 basis at (x, y, z): writes out[degree^2] when out != nullptr, and adds
// sum_k grad_out[k] dY_k/d(x,y,z) to grad[3] when grad_out != nullptr.
template <typename T>
PT3D_HD void sh_eval(T x, T y, T z, int degree, const ShNorm& norm, T* out, const T* grad_out,
                     T* grad) {
  // cm[m] + i sm[m] = (x + iy)^m
  T cm[kShMaxDegree], sm[kShMaxDegree];
  cm[0] = T(1);
  sm[0] = T(0);
  for (int m = 1; m < degree; ++m) {
    cm[m] = x * cm[m - 1] - y * sm[m - 1];
    sm[m] = x * sm[m - 1] + y * cm[m - 1];
  }
  // q[l][m] = d^m P_l(z) / dz^m, zero for m > l.
  T q[kShMaxDegree][kShMaxDegree + 1];
  for (int m = 0; m < degree; ++m) {
    T diag = T(1);  // (2m-1)!!
    for (int k = 1; k <= m; ++k) diag *= T(2 * k - 1);
    for (int l = 0; l < m; ++l) q[l][m] = T(0);
    q[m][m] = diag;
    if (m + 1 < degree) q[m + 1][m] = T(2 * m + 1) * z * diag;
    for (int l = m + 2; l < degree; ++l) {
      q[l][m] = (T(2 * l - 1) * z * q[l - 1][m] - T(l + m - 1) * q[l - 2][m]) / T(l - m);
    }
  }
  for (int l = 0; l < degree; ++l) q[l][degree] = T(0);
  for (int l = 0; l < degree; ++l) {
    const int base = l * l + l;
    for (int m = 0; m <= l; ++m) {
      const T n = static_cast<T>(norm.n[l][m]);
      const T nq = n * q[l][m];
      const T nq_dz = n * q[l][m + 1];  // d(n Q_l^m)/dz
      if (m == 0) {
        if (out) out[base] = nq;
        if (grad_out) grad[2] += grad_out[base] * nq_dz;
        continue;
      }
      if (out) {
        out[base + m] = nq * cm[m];
        out[base - m] = nq * sm[m];
      }
      if (grad_out) {
        // d(x+iy)^m/dx = m (x+iy)^(m-1),  d/dy = i m (x+iy)^(m-1)
        const T gc = grad_out[base + m], gs = grad_out[base - m];
        const T mq = T(m) * nq;
        grad[0] += mq * (gc * cm[m - 1] + gs * sm[m - 1]);
        grad[1] += mq * (-gc * sm[m - 1] + gs * cm[m - 1]);
        grad[2] += nq_dz * (gc * cm[m] + gs * sm[m]);
      }
    }
  }
}

}  // namespace pt3d_radnerf
