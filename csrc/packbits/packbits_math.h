// Packs a float occupancy grid into a bitfield: per-byte math shared by CPU and CUDA.
//
// Byte i holds cells 8i..8i+7, cell 8i+k in bit k (least significant first), set when the
// cell's value is strictly above the threshold. Cells marked unseen (-1) never pass a
// non-negative threshold. The grid keeps morton order, so one byte covers a 2x2x2 block.
#pragma once

#include "common/hd.h"

namespace pt3d_radnerf {

template <typename T>
PT3D_HD uint8_t pack_byte(const T* cells, T threshold) {
  uint8_t bits = 0;
  for (int k = 0; k < 8; ++k) {
    if (cells[k] > threshold) bits |= static_cast<uint8_t>(1u << k);
  }
  return bits;
}

}  // namespace pt3d_radnerf
