// grid_encode on the CPU.
//
// Points come in chunks of kChunk, swept level by level: one level's table stays in cache for
// the whole chunk. Table rows are random reads (and, in the backward, random read-modify-
// writes) of a table far larger than L1, so each sweep computes a point's corners kPrefetch
// points ahead of using them and prefetches their rows: the loads overlap instead of stalling
// one after the other (about 3x on RAD-NeRF's 2^16-row levels).
//
// Forward: parallel over points. Backward: chunk after chunk, the table gradient is split into
// row slices (a level, or a part of a level when there are more threads than levels), each
// accumulated by one thread in point order; the input gradient is fused into the same sweep
// (same corners and rows) as per-level partials, summed over levels in level order. Both are
// bitwise deterministic and independent of the thread count; no atomics.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include "grid_encode/grid_encode_math.h"
#include "grid_encode/grid_encode.h"

namespace pt3d_radnerf {
namespace {

constexpr int64_t kChunk = 4096;  // points per level-major sweep
constexpr int kPrefetch = 16;     // corners are prepared this many points before their use

// Prefetches the rows of `table` (a level's first row) that the corners `k` touch.
template <int Write, typename T, int D, int C>
inline void prefetch_rows(const T* table, const GridCorners<T, D>& k) {
  for (uint32_t bits = 0; bits < (1u << D); ++bits) {
    __builtin_prefetch(table + static_cast<int64_t>(k.row[bits]) * C, Write);
  }
}

// Unit coordinates of m points; inside[i] = 0 for points outside the bound.
template <typename T, int D>
inline void chunk_units(const T* x, int64_t m, const GridLevels& g, T* unit, uint8_t* inside) {
  for (int64_t i = 0; i < m; ++i) inside[i] = grid_unit<T, D>(x + i * D, g, unit + i * D);
}

// Runs use(i, cell, corners) for the inside points i in [0, m) of one level, in order; each
// point's corners are computed, and prefetch(i, corners) called, kPrefetch points early.
template <typename T, int D, typename Prefetch, typename Use>
inline void sweep_level(const T* unit, const uint8_t* inside, int64_t m, const GridLevels& g,
                        int level, const Prefetch& prefetch, const Use& use) {
  GridCell<T, D> cells[kPrefetch + 1];
  GridCorners<T, D> corners[kPrefetch + 1];
  for (int64_t i = 0; i < m + kPrefetch; ++i) {
    const int64_t j = i - kPrefetch;  // used first: slot j % (kPrefetch + 1) is free after
    if (j >= 0 && inside[j]) use(j, cells[j % (kPrefetch + 1)], corners[j % (kPrefetch + 1)]);
    if (i < m && inside[i]) {
      const int64_t s = i % (kPrefetch + 1);
      grid_cell_of_unit<T, D>(unit + i * D, g, level, cells[s]);
      grid_corners<T, D>(cells[s], g, level, corners[s]);
      prefetch(i, corners[s]);
    }
  }
}

}  // namespace

at::Tensor grid_encode_cpu(const at::Tensor& inputs, const at::Tensor& embeddings,
                           const GridLevels& g) {
  const int64_t n = inputs.size(0);
  const int64_t L = g.num_levels;
  at::Tensor out = at::empty({n, L * embeddings.size(1)}, embeddings.options());
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "grid_encode_cpu", [&] {
    const scalar_t* x = inputs.data_ptr<scalar_t>();
    const scalar_t* emb = embeddings.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    dispatch_grid_dims(inputs.size(1), embeddings.size(1), [&](auto d_, auto c_) {
      constexpr int D = decltype(d_)::value;
      constexpr int C = decltype(c_)::value;
      at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
        const int64_t cap = std::min(kChunk, end - begin);
        std::vector<scalar_t> unit(static_cast<size_t>(cap * D));
        std::vector<uint8_t> inside(static_cast<size_t>(cap));
        // Level-major features of the chunk, copied to the point-major output at the end
        // (writing 8-byte pieces of every point's output row level after level would evict
        // the level's table).
        std::vector<scalar_t> feats(static_cast<size_t>(cap * L * C));
        for (int64_t first = begin; first < end; first += kChunk) {
          const int64_t m = std::min(end, first + kChunk) - first;
          chunk_units<scalar_t, D>(x + first * D, m, g, unit.data(), inside.data());
          for (int64_t l = 0; l < L; ++l) {
            const scalar_t* table = emb + static_cast<int64_t>(g.offset[l]) * C;
            scalar_t* f = feats.data() + l * m * C;
            std::fill(f, f + m * C, scalar_t(0));  // points outside the bound
            sweep_level<scalar_t, D>(
                unit.data(), inside.data(), m, g, static_cast<int>(l),
                [&](int64_t, const GridCorners<scalar_t, D>& k) {
                  prefetch_rows<0, scalar_t, D, C>(table, k);
                },
                [&](int64_t i, const GridCell<scalar_t, D>&, const GridCorners<scalar_t, D>& k) {
                  grid_gather<scalar_t, scalar_t, D, C>(table, k, f + i * C);
                });
          }
          for (int64_t i = 0; i < m; ++i) {
            scalar_t* dst = y + (first + i) * L * C;
            for (int64_t l = 0; l < L; ++l) {
              for (int c = 0; c < C; ++c) dst[l * C + c] = feats[(l * m + i) * C + c];
            }
          }
        }
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> grid_encode_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& inputs,
                                                            const at::Tensor& embeddings,
                                                            const GridLevels& g,
                                                            bool input_grad) {
  const int64_t n = inputs.size(0);
  const int64_t L = g.num_levels;
  at::Tensor grad_emb = at::zeros_like(embeddings);
  at::Tensor grad_x = input_grad ? at::empty_like(inputs) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "grid_encode_backward_cpu", [&] {
    const scalar_t* x = inputs.data_ptr<scalar_t>();
    const scalar_t* emb = embeddings.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* ge = grad_emb.data_ptr<scalar_t>();
    scalar_t* gx = input_grad ? grad_x.data_ptr<scalar_t>() : nullptr;
    dispatch_grid_dims(inputs.size(1), embeddings.size(1), [&](auto d_, auto c_) {
      constexpr int D = decltype(d_)::value;
      constexpr int C = decltype(c_)::value;
      // Row slices: each level split into `parts` equal row ranges, so that every thread has
      // one when there are more threads than levels; slices are dealt round-robin to workers
      // (contiguous blocks would give one thread all the fine, cache-missing levels). A worker
      // sweeps one slice over all points (chunk by chunk) before the next, so the slice's
      // gradient rows stay in cache; no barrier between chunks.
      const int64_t threads = at::get_num_threads();
      const int64_t parts = std::max<int64_t>(1, (threads + L - 1) / L);
      const int64_t slices = L * parts;
      const int64_t workers = std::max<int64_t>(1, std::min(slices, threads));
      // Input gradient per level and point, (L, n, D), summed over levels in order at the end.
      const at::Tensor partial_t = input_grad ? at::empty({L, n, D}, inputs.options()) : at::Tensor();
      scalar_t* partial = input_grad ? partial_t.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, workers, 1, [&](int64_t wbegin, int64_t wend) {
        const int64_t cap = std::min(kChunk, n);
        std::vector<scalar_t> unit(static_cast<size_t>(cap * D));
        std::vector<uint8_t> inside(static_cast<size_t>(cap));
        for (int64_t w = wbegin; w < wend; ++w) {
          for (int64_t s = w; s < slices; s += workers) {
            for (int64_t first = 0; first < n; first += kChunk) {
              const int64_t m = std::min(n, first + kChunk) - first;
              chunk_units<scalar_t, D>(x + first * D, m, g, unit.data(), inside.data());
              const int level = static_cast<int>(s / parts);
              const int64_t part = s % parts;
              const uint32_t size = g.size[level];
              const uint32_t lo = static_cast<uint32_t>(int64_t(size) * part / parts);
              const uint32_t hi = static_cast<uint32_t>(int64_t(size) * (part + 1) / parts);
              scalar_t* table_grad = ge + static_cast<int64_t>(g.offset[level]) * C;
              const scalar_t* table = emb + static_cast<int64_t>(g.offset[level]) * C;
              const bool with_input = input_grad && part == 0;
              // torch-ngp's tiled/dense indexing drops the axes whose running stride exceeds
              // the table (fine levels): the last axis then adds nothing to the row.
              const bool last_axis_dropped = !g.hashed[level] && g.stride[level][D - 1] == 0;
              scalar_t* level_partial = with_input ? partial + (level * n + first) * D : nullptr;
              sweep_level<scalar_t, D>(
                  unit.data(), inside.data(), m, g, level,
                  [&](int64_t, const GridCorners<scalar_t, D>& k) {
                    prefetch_rows<1, scalar_t, D, C>(table_grad, k);
                    if (with_input) prefetch_rows<0, scalar_t, D, C>(table, k);
                  },
                  [&](int64_t i, const GridCell<scalar_t, D>& cell,
                      const GridCorners<scalar_t, D>& k) {
                    const scalar_t* gi = go + ((first + i) * L + level) * C;
                    // With the last axis dropped, corners bits and bits + 2^(D-1) share a
                    // row: one update for both (same in every slice: thread-count independent).
                    constexpr uint32_t half = 1u << (D - 1);
                    for (uint32_t bits = 0; bits < (last_axis_dropped ? half : 2 * half); ++bits) {
                      const uint32_t r = k.row[bits];
                      if (parts > 1 && (r < lo || r >= hi)) continue;
                      scalar_t* dst = table_grad + static_cast<int64_t>(r) * C;
                      if (last_axis_dropped) {
                        const scalar_t w_up = k.w[bits + half];
                        for (int c = 0; c < C; ++c) dst[c] += k.w[bits] * gi[c] + w_up * gi[c];
                      } else {
                        for (int c = 0; c < C; ++c) dst[c] += k.w[bits] * gi[c];
                      }
                    }
                    if (with_input) {
                      scalar_t* p = level_partial + i * D;
                      for (int d = 0; d < D; ++d) p[d] = scalar_t(0);
                      grid_input_grad_corners<scalar_t, scalar_t, D, C>(cell, k, table, gi, p);
                    }
                  });
            }
          }
        }
      });
      if (!input_grad) return;
      at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          scalar_t acc[D] = {};
          scalar_t u[D];
          if (grid_unit<scalar_t, D>(x + i * D, g, u)) {  // else never written: zero gradient
            for (int64_t l = 0; l < L; ++l) {
              for (int d = 0; d < D; ++d) acc[d] += partial[(l * n + i) * D + d];
            }
          }
          for (int d = 0; d < D; ++d) gx[i * D + d] = acc[d];
        }
      });
    });
  });
  return {grad_emb, grad_x};
}

}  // namespace pt3d_radnerf
