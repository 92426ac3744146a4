// Morton (Z-order) codes of 3-D integer cell coordinates: per-element math.
//
// Bits of x, y, z are interleaved as ...z1 y1 x1 z0 y0 x0, so x is the fastest-varying
// axis (instant-ngp's layout). 10 bits per axis: resolutions up to 1024 per cascade.
#pragma once

#include "common/hd.h"

namespace pt3d_radnerf {

constexpr int kMortonBitsPerAxis = 10;
constexpr int32_t kMortonMaxCoord = (1 << kMortonBitsPerAxis) - 1;

// Spreads the low 10 bits of v so that two zero bits separate each: b9..b0 -> b9 0 0 b8 ...
PT3D_HD uint32_t morton_expand_bits(uint32_t v) {
  v &= 0x3ffu;
  v = (v | (v << 16)) & 0x030000ffu;
  v = (v | (v << 8)) & 0x0300f00fu;
  v = (v | (v << 4)) & 0x030c30c3u;
  v = (v | (v << 2)) & 0x09249249u;
  return v;
}

// Inverse of morton_expand_bits: gathers every third bit back into the low 10 bits.
PT3D_HD uint32_t morton_compact_bits(uint32_t v) {
  v &= 0x09249249u;
  v = (v | (v >> 2)) & 0x030c30c3u;
  v = (v | (v >> 4)) & 0x0300f00fu;
  v = (v | (v >> 8)) & 0x030000ffu;
  v = (v | (v >> 16)) & 0x000003ffu;
  return v;
}

PT3D_HD uint32_t morton3d_encode(uint32_t x, uint32_t y, uint32_t z) {
  return morton_expand_bits(x) | (morton_expand_bits(y) << 1) | (morton_expand_bits(z) << 2);
}

PT3D_HD void morton3d_decode(uint32_t code, uint32_t* x, uint32_t* y, uint32_t* z) {
  *x = morton_compact_bits(code);
  *y = morton_compact_bits(code >> 1);
  *z = morton_compact_bits(code >> 2);
}

}  // namespace pt3d_radnerf
