// Decode attention straight over the paged KV cache: one query token per sequence, keys and values
// read through the sequence's block table, never copied into a contiguous buffer.
//
// Per (sequence, head), in parallel on torch's intra-op pool: scores q.k * scale over the sequence's
// context, softmax (max-subtracted, float32 accumulation), then the probability-weighted sum of V.
// Registered as torch.ops.llmops_paged.decode_attention; CPU, a float32, bfloat16 or float16 cache
// (query and output in the cache's dtype, arithmetic in float32).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

void check_inputs(const at::Tensor& query, const at::Tensor& key_cache, const at::Tensor& value_cache,
                  const at::Tensor& block_tables, const at::Tensor& context_lens, int64_t block_size) {
  TORCH_CHECK(query.dim() == 3, "query must be [B, H, D]");
  TORCH_CHECK(key_cache.dim() == 3 && value_cache.sizes() == key_cache.sizes(),
              "key/value cache must be [num_slots, KVH, D] and of one shape");
  const auto dtype = key_cache.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "decode_attention takes a float32, bfloat16 or float16 cache");
  TORCH_CHECK(query.scalar_type() == dtype && value_cache.scalar_type() == dtype,
              "query, keys and values must share one dtype");
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

// exp(x) for x <= 0 in plain arithmetic, so the softmax loop vectorises (std::exp stays a scalar call):
// Cephes' expf, exp(x) = 2^n * exp(r) with |r| <= ln2 / 2, within 2 ulp of std::exp on that range.
// Inputs below -87 (weights under 1e-38 of the largest) come out as exp(-87).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

// One sequence, heads [first, first + count) of one KV head group layout: every position's K (then V)
// row of those heads is read once, contiguously, for all of them. ``scores`` holds count * len floats.
template <typename T>
struct Span {
  const float* q;        // [count, dim] query rows, in float32
  const T* keys;         // cache base, already offset to the first head
  const T* values;
  const int64_t* table;  // the sequence's block ids
  int64_t len, block_size, row_stride, dim, count, group;
  float scale;
  float* out;            // [count, dim], float32
};

template <typename T>
inline const T* row_at(const T* base, const Span<T>& s, int64_t p) {
  return base + (s.table[p / s.block_size] * s.block_size + p % s.block_size) * s.row_stride;
}

// The cache rows are far larger than L2 and spread over blocks, so loads wait on memory; asking for
// the row PREFETCH_AHEAD positions on while working on this one keeps several misses in flight.
constexpr int64_t PREFETCH_AHEAD = 4;
constexpr int64_t CACHE_LINE_BYTES = 64;

template <typename T>
inline void prefetch_row(const T* base, const Span<T>& s, int64_t p) {
  if (p >= s.len) return;
  const char* row = reinterpret_cast<const char*>(row_at(base, s, p));
  const int64_t bytes = ((s.count - 1) / s.group + 1) * s.dim * static_cast<int64_t>(sizeof(T));
  for (int64_t b = 0; b < bytes; b += CACHE_LINE_BYTES) __builtin_prefetch(row + b, 0, 3);
}

template <typename T>
void attend_span(const Span<T>& s, std::vector<float>& scores) {
  const int64_t len = s.len, dim = s.dim;
  scores.resize(static_cast<size_t>(s.count * len));
  float* score = scores.data();
  for (int64_t p = 0; p < PREFETCH_AHEAD; ++p) prefetch_row(s.keys, s, p);
  for (int64_t p = 0; p < len; ++p) {
    prefetch_row(s.keys, s, p + PREFETCH_AHEAD);
    const T* k = row_at(s.keys, s, p);
    for (int64_t h = 0; h < s.count; ++h) {
      const T* kh = k + (h / s.group) * dim;
      const float* qh = s.q + h * dim;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < dim; ++d) dot += qh[d] * static_cast<float>(kh[d]);
      score[h * len + p] = dot * s.scale;
    }
  }
  std::vector<float> inverse(static_cast<size_t>(s.count));
  for (int64_t h = 0; h < s.count; ++h) {
    float* row = score + h * len;
    float highest = -std::numeric_limits<float>::infinity();
    for (int64_t p = 0; p < len; ++p) highest = std::max(highest, row[p]);
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int64_t p = 0; p < len; ++p) {
      row[p] = exp_nonpositive(row[p] - highest);
      total += row[p];
    }
    inverse[h] = 1.f / total;
  }
  std::fill(s.out, s.out + s.count * dim, 0.f);
  for (int64_t p = 0; p < PREFETCH_AHEAD; ++p) prefetch_row(s.values, s, p);
  for (int64_t p = 0; p < len; ++p) {
    prefetch_row(s.values, s, p + PREFETCH_AHEAD);
    const T* v = row_at(s.values, s, p);
    for (int64_t h = 0; h < s.count; ++h) {
      const T* vh = v + (h / s.group) * dim;
      float* oh = s.out + h * dim;
      const float weight = score[h * len + p];
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) oh[d] += weight * static_cast<float>(vh[d]);
    }
  }
  for (int64_t h = 0; h < s.count; ++h) {
    float* oh = s.out + h * dim;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) oh[d] *= inverse[h];
  }
}

template <typename T>
void attend_all(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                const at::Tensor& tables, const at::Tensor& lens, int64_t block_size, float scale,
                at::Tensor& out) {
  const int64_t rows = q.size(0), heads = q.size(1), dim = q.size(2);
  const int64_t kv_heads = key_cache.size(1), width = tables.size(1);
  const float* q_data = q.data_ptr<float>();
  const T* k_data = key_cache.data_ptr<T>();
  const T* v_data = value_cache.data_ptr<T>();
  const int64_t* table_data = tables.data_ptr<int64_t>();
  const int64_t* len_data = lens.data_ptr<int64_t>();
  float* out_data = out.data_ptr<float>();
  const int64_t group = heads / kv_heads;
  // Work items: (sequence, slice of heads). Whole KV head groups per slice, and enough slices that
  // every thread gets work when there are few sequences.
  const int64_t wanted = std::max<int64_t>(1, (4 * at::get_num_threads() + rows - 1) / rows);
  const int64_t slices = std::min<int64_t>(kv_heads, wanted);
  const int64_t kv_per_slice = (kv_heads + slices - 1) / slices;
  const int64_t row_stride = kv_heads * dim;
  at::parallel_for(0, rows * slices, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / slices, first_kv = (i % slices) * kv_per_slice;
      const int64_t kv_count = std::min(kv_per_slice, kv_heads - first_kv);
      if (kv_count <= 0) continue;
      const int64_t first = first_kv * group;
      Span<T> span{q_data + (b * heads + first) * dim, k_data + first_kv * dim, v_data + first_kv * dim,
                   table_data + b * width, len_data[b], block_size, row_stride, dim, kv_count * group,
                   group, scale, out_data + (b * heads + first) * dim};
      attend_span(span, scores);
    }
  });
}

at::Tensor decode_attention(const at::Tensor& query, const at::Tensor& key_cache, const at::Tensor& value_cache,
                            const at::Tensor& block_tables, const at::Tensor& context_lens, int64_t block_size,
                            double scale) {
  check_inputs(query, key_cache, value_cache, block_tables, context_lens, block_size);
  const at::Tensor q = query.to(at::kFloat).contiguous();
  const at::Tensor tables = block_tables.contiguous();
  const at::Tensor lens = context_lens.contiguous();
  check_tables(tables.data_ptr<int64_t>(), lens.data_ptr<int64_t>(), q.size(0), tables.size(1), block_size,
               key_cache.size(0) / block_size);
  at::Tensor out = at::empty_like(q);
  const float scale_f = static_cast<float>(scale);
  switch (key_cache.scalar_type()) {
    case at::kBFloat16:
      attend_all<c10::BFloat16>(q, key_cache, value_cache, tables, lens, block_size, scale_f, out);
      break;
    case at::kHalf:
      attend_all<c10::Half>(q, key_cache, value_cache, tables, lens, block_size, scale_f, out);
      break;
    default:
      attend_all<float>(q, key_cache, value_cache, tables, lens, block_size, scale_f, out);
  }
  return out.to(query.scalar_type());
}

}  // namespace

TORCH_LIBRARY(llmops_paged, m) {
  m.def(
      "decode_attention(Tensor query, Tensor key_cache, Tensor value_cache, Tensor block_tables, "
      "Tensor context_lens, int block_size, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(llmops_paged, CPU, m) { m.impl("decode_attention", &decode_attention); }
