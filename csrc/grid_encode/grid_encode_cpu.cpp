// grid_encode on the CPU. Forward and input backward parallelise over points; the embedding
// backward parallelises over levels (their table slices are disjoint), so each table row is
// accumulated by one thread in point order: bitwise deterministic for any thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "common/cpu_utils.h"
#include "grid_encode/grid_encode_math.h"
#include "grid_encode/grid_encode.h"

namespace pt3d_radnerf {
namespace {

constexpr int64_t kPointChunk = 1024;    // smallest task of the point-parallel loops
constexpr int64_t kForwardChunk = 4096;  // points per level-major sweep of the forward

template <typename T, int C>
struct AddRowCpu {
  T* grad_emb;
  const T* grad_out;  // C values of this point and level
  void operator()(uint32_t row, T w) {
    T* dst = grad_emb + static_cast<int64_t>(row) * C;
    for (int c = 0; c < C; ++c) dst[c] += w * grad_out[c];
  }
};

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
      at::parallel_for(0, n, kPointChunk, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> unit(static_cast<size_t>(std::min(kForwardChunk, end - begin) * D));
        std::vector<uint8_t> inside(static_cast<size_t>(std::min(kForwardChunk, end - begin)));
        for (int64_t first = begin; first < end; first += kForwardChunk) {
          const int64_t last = std::min(end, first + kForwardChunk);
          for (int64_t i = first; i < last; ++i) {
            inside[i - first] = grid_unit<scalar_t, D>(x + i * D, g, unit.data() + (i - first) * D);
          }
          // Level-major within the chunk: one level's table slice stays in cache for all of
          // the chunk's points.
          for (int64_t l = 0; l < L; ++l) {
            for (int64_t i = first; i < last; ++i) {
              scalar_t* dst = y + (i * L + l) * C;
              if (inside[i - first]) {
                grid_forward_level_unit<scalar_t, scalar_t, D, C>(
                    unit.data() + (i - first) * D, emb, g, static_cast<int>(l), dst);
              } else {
                for (int c = 0; c < C; ++c) dst[c] = scalar_t(0);
              }
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
    dispatch_grid_dims(inputs.size(1), embeddings.size(1), [&](auto d_, auto c_) {
      constexpr int D = decltype(d_)::value;
      constexpr int C = decltype(c_)::value;
      // Levels are dealt round-robin to workers: contiguous blocks would give one thread all
      // the fine (cache-missing) levels and the other all the cheap coarse ones.
      const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(L, at::get_num_threads()));
      at::parallel_for(0, workers, 1, [&](int64_t wbegin, int64_t wend) {
        for (int64_t w = wbegin; w < wend; ++w) {
          for (int64_t l = w; l < L; l += workers) {
            for (int64_t i = 0; i < n; ++i) {
              AddRowCpu<scalar_t, C> sink{ge, go + (i * L + l) * C};
              grid_backward_level<scalar_t, D>(x + i * D, g, static_cast<int>(l), sink);
            }
          }
        }
      });
      if (!input_grad) return;
      scalar_t* gx = grad_x.data_ptr<scalar_t>();
      at::parallel_for(0, n, kPointChunk, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          scalar_t acc[D] = {};
          for (int64_t l = 0; l < L; ++l) {
            grid_input_backward_level<scalar_t, scalar_t, D, C>(
                x + i * D, emb, g, static_cast<int>(l), go + (i * L + l) * C, acc);
          }
          for (int d = 0; d < D; ++d) gx[i * D + d] = acc[d];
        }
      });
    });
  });
  return {grad_emb, grad_x};
}

}  // namespace pt3d_radnerf
