// Decode attention straight over the paged KV cache: one query token per sequence, keys and values
// read through the sequence's block table, never copied into a contiguous buffer.
//
// Per (sequence, head), in parallel on torch's intra-op pool: scores q.k * scale over the sequence's
// context, softmax (max-subtracted, float32 accumulation), then the probability-weighted sum of V.
// Registered as torch.ops.llmops_paged.decode_attention; float32 on the CPU only.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

void check_inputs(const at::Tensor& query, const at::Tensor& key_cache, const at::Tensor& value_cache,
                  const at::Tensor& block_tables, const at::Tensor& context_lens, int64_t block_size) {
  TORCH_CHECK(query.dim() == 3, "query must be [B, H, D]");
  TORCH_CHECK(key_cache.dim() == 3 && value_cache.sizes() == key_cache.sizes(),
              "key/value cache must be [num_slots, KVH, D] and of one shape");
  TORCH_CHECK(query.scalar_type() == at::kFloat && key_cache.scalar_type() == at::kFloat &&
                  value_cache.scalar_type() == at::kFloat,
              "decode_attention runs in float32");
  TORCH_CHECK(key_cache.is_contiguous() && value_cache.is_contiguous(), "the KV cache must be contiguous");
  TORCH_CHECK(block_tables.dim() == 2 && block_tables.size(0) == query.size(0) &&
                  block_tables.scalar_type() == at::kLong,
              "block_tables must be int64 [B, num_blocks]");
  TORCH_CHECK(context_lens.dim() == 1 && context_lens.size(0) == query.size(0) &&
                  context_lens.scalar_type() == at::kLong,
              "context_lens must be int64 [B]");
  TORCH_CHECK(query.size(2) == key_cache.size(2), "query and cache head_dim differ");
  TORCH_CHECK(query.size(1) % key_cache.size(1) == 0, "query heads must be a multiple of KV heads");
  TORCH_CHECK(block_size > 0 && key_cache.size(0) % block_size == 0, "bad block_size");
}

// Every context length fits its block table and every block id it reaches is inside the cache.
void check_tables(const int64_t* tables, const int64_t* lens, int64_t rows, int64_t width,
                  int64_t block_size, int64_t num_blocks) {
  for (int64_t b = 0; b < rows; ++b) {
    TORCH_CHECK(lens[b] >= 1 && lens[b] <= width * block_size, "context length outside its block table");
    const int64_t used = (lens[b] + block_size - 1) / block_size;
    for (int64_t j = 0; j < used; ++j) {
      const int64_t block = tables[b * width + j];
      TORCH_CHECK(block >= 0 && block < num_blocks, "block id outside the cache");
    }
  }
}

void attend_one(const float* q, const float* keys, const float* values, const int64_t* table,
                int64_t len, int64_t block_size, int64_t row_stride, int64_t dim, float scale,
                std::vector<float>& scores, float* out) {
  scores.resize(static_cast<size_t>(len));
  float highest = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < len; ++p) {
    const int64_t slot = table[p / block_size] * block_size + p % block_size;
    const float* k = keys + slot * row_stride;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < dim; ++d) dot += q[d] * k[d];
    dot *= scale;
    scores[p] = dot;
    highest = std::max(highest, dot);
  }
  float total = 0.f;
  float* score = scores.data();
#pragma omp simd reduction(+ : total)
  for (int64_t p = 0; p < len; ++p) {
    score[p] = std::exp(score[p] - highest);
    total += score[p];
  }
  std::fill(out, out + dim, 0.f);
  for (int64_t p = 0; p < len; ++p) {
    const int64_t slot = table[p / block_size] * block_size + p % block_size;
    const float* v = values + slot * row_stride;
    const float weight = scores[p];
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) out[d] += weight * v[d];
  }
  const float inverse = 1.f / total;
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) out[d] *= inverse;
}

at::Tensor decode_attention(const at::Tensor& query, const at::Tensor& key_cache, const at::Tensor& value_cache,
                            const at::Tensor& block_tables, const at::Tensor& context_lens, int64_t block_size,
                            double scale) {
  check_inputs(query, key_cache, value_cache, block_tables, context_lens, block_size);
  const at::Tensor q = query.contiguous();
  const at::Tensor tables = block_tables.contiguous();
  const at::Tensor lens = context_lens.contiguous();
  const int64_t rows = q.size(0), heads = q.size(1), dim = q.size(2);
  const int64_t kv_heads = key_cache.size(1), width = tables.size(1);
  check_tables(tables.data_ptr<int64_t>(), lens.data_ptr<int64_t>(), rows, width, block_size,
               key_cache.size(0) / block_size);
  at::Tensor out = at::empty_like(q);
  const float* q_data = q.data_ptr<float>();
  const float* k_data = key_cache.data_ptr<float>();
  const float* v_data = value_cache.data_ptr<float>();
  const int64_t* table_data = tables.data_ptr<int64_t>();
  const int64_t* len_data = lens.data_ptr<int64_t>();
  float* out_data = out.data_ptr<float>();
  const int64_t group = heads / kv_heads;
  const float scale_f = static_cast<float>(scale);
  at::parallel_for(0, rows * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / heads, h = i % heads;
      const int64_t head_offset = (h / group) * dim;
      attend_one(q_data + i * dim, k_data + head_offset, v_data + head_offset, table_data + b * width,
                 len_data[b], block_size, kv_heads * dim, dim, scale_f, scores, out_data + i * dim);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(llmops_paged, m) {
  m.def(
      "decode_attention(Tensor query, Tensor key_cache, Tensor value_cache, Tensor block_tables, "
      "Tensor context_lens, int block_size, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(llmops_paged, CPU, m) { m.impl("decode_attention", &decode_attention); }
