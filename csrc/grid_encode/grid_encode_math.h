// Multiresolution grid encoding (instant-ngp / torch-ngp layout): per-element math shared by
// the CPU loop and the CUDA kernels. No torch headers.
//
// Conventions (match torch-ngp's gridencoder, which RAD-NeRF checkpoints use):
//  * input x in [-bound, bound]^D is mapped to u = (x + bound) / (2 bound) in [0, 1]^D;
//    a point with any u outside [0, 1] (or NaN) gets zero features and zero gradients.
//  * level l: position p = u * scale_l + 0.5 (+ 0 with align_corners), cell = floor(p),
//    t = p - cell, weights t (linear) or 3t^2 - 2t^3 (smoothstep) for the upper corner.
//  * a corner's table row: dense strides (computed on the host, 0 for dimensions that
//    torch-ngp drops once the running stride exceeds the table) or, on "hash" levels whose
//    dense grid does not fit, XOR of corner[d] * prime[d] in uint32; then modulo the level's
//    table size.
#pragma once

#include "common/hd.h"

#include <type_traits>

#if defined(__CUDACC__)
#define PT3D_GRID_UNROLL _Pragma("unroll")
#else
#define PT3D_GRID_UNROLL _Pragma("GCC unroll 8")
#endif

namespace pt3d_radnerf {

constexpr int kGridMaxLevels = 32;
constexpr int kGridMaxDim = 3;

// Layout of every level, computed once on the host and passed to kernels by value.
struct GridLevels {
  int32_t num_levels;
  bool align_corners;
  bool smoothstep;
  double bound;       // inputs live in [-bound, bound]
  double inv_extent;  // 1 / (2 bound)
  uint32_t offset[kGridMaxLevels];  // first table row of the level
  uint32_t size[kGridMaxLevels];    // table rows of the level
  uint32_t stride[kGridMaxLevels][kGridMaxDim];
  bool hashed[kGridMaxLevels];
  double scale[kGridMaxLevels];  // p = u * scale + (align_corners ? 0 : 0.5)
};

// The cell a point falls in at one level, with the interpolation weight of the upper corner
// along each axis and its derivative w.r.t. the raw input coordinate x[d].
template <typename T, int D>
struct GridCell {
  uint32_t cell[D];
  T w[D];
  T dw[D];
};

// Input x[D] -> unit coordinates u[D] = (x + bound) / (2 bound); false (u unspecified) when a
// coordinate lies outside [0, 1] or is NaN. The same for every level, so loops over levels of
// one point compute it once.
template <typename T, int D>
PT3D_HD bool grid_unit(const T* x, const GridLevels& g, T* u) {
  const T inv_extent = static_cast<T>(g.inv_extent);
  const T bound = static_cast<T>(g.bound);
PT3D_GRID_UNROLL
  for (int d = 0; d < D; ++d) {
    u[d] = (x[d] + bound) * inv_extent;
    if (!(u[d] >= T(0) && u[d] <= T(1))) return false;  // also rejects NaN
  }
  return true;
}

// The cell of unit coordinates u (from grid_unit) at one level.
template <typename T, int D>
PT3D_HD void grid_cell_of_unit(const T* u, const GridLevels& g, int level, GridCell<T, D>& c) {
  const T scale = static_cast<T>(g.scale[level]);
  const T inv_extent = static_cast<T>(g.inv_extent);
  const T shift = g.align_corners ? T(0) : T(0.5);
PT3D_GRID_UNROLL
  for (int d = 0; d < D; ++d) {
    const T p = u[d] * scale + shift;
    // p >= 0 (u in [0, 1], scale >= 0, shift >= 0) and p < 2^32 (scale < 1e7 is checked on
    // the host), so truncation equals floor: one conversion instead of x86-64 baseline's
    // multi-instruction floor sequence (no SSE4.1 round) and a second conversion.
    const uint32_t cell = static_cast<uint32_t>(p);
    const T t = p - static_cast<T>(cell);
    c.cell[d] = cell;
    if (g.smoothstep) {
      c.w[d] = t * t * (T(3) - T(2) * t);
      c.dw[d] = T(6) * t * (T(1) - t) * scale * inv_extent;
    } else {
      c.w[d] = t;
      c.dw[d] = scale * inv_extent;
    }
  }
}

template <typename T, int D>
PT3D_HD bool grid_cell(const T* x, const GridLevels& g, int level, GridCell<T, D>& c) {
  T u[D];
  if (!grid_unit<T, D>(x, g, u)) return false;
  grid_cell_of_unit<T, D>(u, g, level, c);
  return true;
}

// Table row (relative to the level's offset) of corner `bits` (bit d set = upper along d).
template <int D>
PT3D_HD uint32_t grid_corner_row(const GridLevels& g, int level, const uint32_t* cell,
                                 uint32_t bits) {
  uint32_t index = 0;
  if (g.hashed[level]) {
    // instant-ngp's coherent prime hash: primes 1, 2654435761, 805459861, uint32 wrap-around.
    index = cell[0] + (bits & 1u);
    if (D > 1) index ^= (cell[1] + ((bits >> 1) & 1u)) * 2654435761u;
    if (D > 2) index ^= (cell[D > 2 ? 2 : 0] + ((bits >> 2) & 1u)) * 805459861u;
  } else {
PT3D_GRID_UNROLL
    for (int d = 0; d < D; ++d) index += (cell[d] + ((bits >> d) & 1u)) * g.stride[level][d];
  }
  const uint32_t size = g.size[level];
  if (index < size) return index;
  return (size & (size - 1u)) == 0u ? (index & (size - 1u)) : (index % size);
}

// The 2^D corners of one point at one level: table rows (relative to the level's offset) and
// interpolation weights, corner `bits` at index bits (bit d set = upper along d).
template <typename T, int D>
struct GridCorners {
  uint32_t row[1 << D];
  T w[1 << D];
};

// Fills `k` for `c`: corner `bits` has row grid_corner_row(bits) and weight the product over
// axes d (in axis order) of w[d] (bit d set) or 1 - w[d]. The per-axis work is shared: the
// dense base row and the weight products of axes 0 and 1 are computed once per point.
template <typename T, int D>
PT3D_HD void grid_corners(const GridCell<T, D>& c, const GridLevels& g, int level,
                          GridCorners<T, D>& k) {
  T sel[D][2];
PT3D_GRID_UNROLL
  for (int d = 0; d < D; ++d) {
    sel[d][0] = T(1) - c.w[d];
    sel[d][1] = c.w[d];
  }
  T w01[4];
PT3D_GRID_UNROLL
  for (uint32_t b = 0; b < 4; ++b) w01[b] = sel[0][b & 1u] * sel[1][b >> 1];
PT3D_GRID_UNROLL
  for (uint32_t bits = 0; bits < (1u << D); ++bits) {
    k.w[bits] = D == 2 ? w01[bits] : w01[bits & 3u] * sel[D - 1][(bits >> 2) & 1u];
  }
  const uint32_t size = g.size[level];
  if (g.hashed[level]) {
PT3D_GRID_UNROLL
    for (uint32_t bits = 0; bits < (1u << D); ++bits) {
      k.row[bits] = grid_corner_row<D>(g, level, c.cell, bits);
    }
    return;
  }
  uint32_t base = 0;
PT3D_GRID_UNROLL
  for (int d = 0; d < D; ++d) base += c.cell[d] * g.stride[level][d];
  const bool pow2 = (size & (size - 1u)) == 0u;
PT3D_GRID_UNROLL
  for (uint32_t bits = 0; bits < (1u << D); ++bits) {
    uint32_t index = base;
PT3D_GRID_UNROLL
    for (int d = 0; d < D; ++d) index += ((bits >> d) & 1u) * g.stride[level][d];
    k.row[bits] = index < size ? index : (pow2 ? (index & (size - 1u)) : (index % size));
  }
}

// Features of one point at one level from its corners: out[C] = sum over the corners (in
// corner order) of weight * table row; `table` is the level's first row.
template <typename T, typename E, int D, int C>
PT3D_HD void grid_gather(const E* table, const GridCorners<T, D>& k, T* out) {
  T acc[C];
PT3D_GRID_UNROLL
  for (int c = 0; c < C; ++c) acc[c] = T(0);
PT3D_GRID_UNROLL
  for (uint32_t bits = 0; bits < (1u << D); ++bits) {
    const E* row = table + static_cast<int64_t>(k.row[bits]) * C;
PT3D_GRID_UNROLL
    for (int c = 0; c < C; ++c) acc[c] += k.w[bits] * static_cast<T>(row[c]);
  }
PT3D_GRID_UNROLL
  for (int c = 0; c < C; ++c) out[c] = acc[c];
}

// Adds one level's input gradient d(grad_out . out) / dx to grad_x[D], corner by corner.
template <typename T, typename E, int D, int C>
PT3D_HD void grid_input_grad_corners(const GridCell<T, D>& cell, const GridCorners<T, D>& k,
                                     const E* table, const T* grad_out, T* grad_x) {
PT3D_GRID_UNROLL
  for (uint32_t bits = 0; bits < (1u << D); ++bits) {
    const E* row = table + static_cast<int64_t>(k.row[bits]) * C;
    T dot = T(0);
PT3D_GRID_UNROLL
    for (int c = 0; c < C; ++c) dot += grad_out[c] * static_cast<T>(row[c]);
PT3D_GRID_UNROLL
    for (int d = 0; d < D; ++d) {
      T partial = ((bits >> d) & 1u) ? cell.dw[d] : -cell.dw[d];
PT3D_GRID_UNROLL
      for (int e = 0; e < D; ++e) {
        if (e != d) partial *= ((bits >> e) & 1u) ? cell.w[e] : T(1) - cell.w[e];
      }
      grad_x[d] += partial * dot;
    }
  }
}

// Features of one point at one level from its unit coordinates (grid_unit returned true).
template <typename T, typename E, int D, int C>
PT3D_HD void grid_forward_level_unit(const T* u, const E* emb, const GridLevels& g, int level,
                                     T* out) {
  GridCell<T, D> cell;
  grid_cell_of_unit<T, D>(u, g, level, cell);
  GridCorners<T, D> k;
  grid_corners<T, D>(cell, g, level, k);
  grid_gather<T, E, D, C>(emb + static_cast<int64_t>(g.offset[level]) * C, k, out);
}

// Features of one point at one level: out[C] (zeros outside the bound).
template <typename T, typename E, int D, int C>
PT3D_HD void grid_forward_level(const T* x, const E* emb, const GridLevels& g, int level,
                                T* out) {
  T u[D];
  if (grid_unit<T, D>(x, g, u)) {
    grid_forward_level_unit<T, E, D, C>(u, emb, g, level, out);
  } else {
PT3D_GRID_UNROLL
    for (int c = 0; c < C; ++c) out[c] = T(0);
  }
}

// Embedding gradient of one point at one level: calls sink(row, weight) for every corner
// (row absolute in the table); the caller adds weight * grad_out[C] to that row.
template <typename T, int D, typename Sink>
PT3D_HD void grid_backward_level(const T* x, const GridLevels& g, int level, Sink& sink) {
  GridCell<T, D> cell;
  if (!grid_cell<T, D>(x, g, level, cell)) return;
  GridCorners<T, D> k;
  grid_corners<T, D>(cell, g, level, k);
PT3D_GRID_UNROLL
  for (uint32_t bits = 0; bits < (1u << D); ++bits) sink(g.offset[level] + k.row[bits], k.w[bits]);
}

// Input gradient of one point at one level: grad_x[D] += d(grad_out . out) / dx.
template <typename T, typename E, int D, int C>
PT3D_HD void grid_input_backward_level(const T* x, const E* emb, const GridLevels& g, int level,
                                       const T* grad_out, T* grad_x) {
  GridCell<T, D> cell;
  if (!grid_cell<T, D>(x, g, level, cell)) return;
  GridCorners<T, D> k;
  grid_corners<T, D>(cell, g, level, k);
  grid_input_grad_corners<T, E, D, C>(cell, k, emb + static_cast<int64_t>(g.offset[level]) * C,
                                      grad_out, grad_x);
}

// Calls fn(std::integral_constant<int, D>, std::integral_constant<int, C>) for the supported
// input dimensions D in {2, 3} and features per level C in {1, 2, 4, 8} (host only).
template <typename Fn>
inline void dispatch_grid_dims(int64_t dim, int64_t features, const Fn& fn) {
  auto with_c = [&](auto d) {
    switch (features) {
      case 1: return fn(d, std::integral_constant<int, 1>{});
      case 2: return fn(d, std::integral_constant<int, 2>{});
      case 4: return fn(d, std::integral_constant<int, 4>{});
      default: return fn(d, std::integral_constant<int, 8>{});
    }
  };
  if (dim == 2) return with_c(std::integral_constant<int, 2>{});
  return with_c(std::integral_constant<int, 3>{});
}

}  // namespace pt3d_radnerf
