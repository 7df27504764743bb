// Decode attention straight over the paged KV cache: one query token per sequence, keys and values
// read through the sequence's block table, never copied into a contiguous buffer.
//
// Per (sequence, head), in parallel on torch's intra-op pool: scores q.k * scale over the sequence's
// context, softmax (max-subtracted, float32 accumulation), then the probability-weighted sum of V.
// Positions are walked block by block; the arithmetic is written with vector types (GCC and Clang
// vector extensions), so it compiles to the target's SIMD width without intrinsics: eight keys' dot
// products share one transposing reduction, and each head's output sum stays in registers.
// Registered as torch.ops.llmops_paged.decode_attention; CPU, a float32, bfloat16 or float16 cache
// (query and output in the cache's dtype, arithmetic in float32).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
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
  x = x < -87.0f ? -87.0f : x;
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

// One sequence, heads [first, first + count), whole KV head groups: the work of one parallel item.
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

// The positions are walked block by block: a block's rows are contiguous in the cache (the hardware
// prefetcher follows them), and the first rows of the next block, which lies anywhere in the cache,
// are asked for while this one is worked on, so a few misses are always in flight. No division per
// position: those integer divisions once cost more than the arithmetic.
constexpr int64_t PREFETCH_ROWS = 4;
constexpr int64_t CACHE_LINE_BYTES = 64;

template <typename T>
inline void prefetch_block(const T* base, const Span<T>& s, int64_t block_index) {
  if (block_index * s.block_size >= s.len) return;
  const char* row = reinterpret_cast<const char*>(base + s.table[block_index] * s.block_size * s.row_stride);
  const int64_t rows = std::min(PREFETCH_ROWS, s.len - block_index * s.block_size);
  const int64_t bytes = rows * s.row_stride * static_cast<int64_t>(sizeof(T));
  for (int64_t b = 0; b < bytes; b += CACHE_LINE_BYTES) __builtin_prefetch(row + b, 0, 3);
}

// Eight floats as one vector (GCC and Clang vector extensions; any SIMD width the target has). The
// aligned(4) variant loads from any float address.
typedef float vec8 __attribute__((vector_size(32)));
typedef float vec8_unaligned __attribute__((vector_size(32), aligned(4)));
typedef int32_t ivec8 __attribute__((vector_size(32)));
constexpr int64_t LANES = 8;

// Lanes of a and b (b's numbered from 8) picked by constant indices: Clang's builtin, or GCC's (any
// GCC version; its __builtin_shufflevector needs GCC 12).
#if defined(__clang__)
#define SHUFFLE8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE8(a, b, ...) __builtin_shuffle(a, b, ivec8{__VA_ARGS__})
#endif

template <typename T>
inline vec8 load8(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *reinterpret_cast<const vec8_unaligned*>(p);
  } else {
    vec8 v;
    for (int64_t l = 0; l < LANES; ++l) v[l] = static_cast<float>(p[l]);
    return v;
  }
}

inline float sum8(vec8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

// q . k over one head. DIM > 0 is the head size known at compile time, a multiple of LANES: one vector
// multiply-add per LANES elements and one horizontal sum. DIM 0 is any size, read from ``dim``.
template <int64_t DIM, typename T>
inline float dot(const float* q, const T* k, int64_t dim) {
  if constexpr (DIM > 0) {
    vec8 total = load8(q) * load8(k);
    for (int64_t d = LANES; d < DIM; d += LANES) total += load8(q + d) * load8(k + d);
    return sum8(total);
  } else {
    float total = 0.f;
    for (int64_t d = 0; d < dim; ++d) total += q[d] * static_cast<float>(k[d]);
    return total;
  }
}

// The sums of eight vectors as one vector (r[i] = sum of a[i]'s lanes): a transpose folded into the
// additions, 7 shuffle pairs and 7 adds for eight dot products instead of eight horizontal sums.
inline vec8 sum8x8(const vec8* a) {
  vec8 b[4], c[2];
  for (int i = 0; i < 4; ++i) {
    b[i] = SHUFFLE8(a[2 * i], a[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
           SHUFFLE8(a[2 * i], a[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  }
  for (int i = 0; i < 2; ++i) {
    c[i] = SHUFFLE8(b[2 * i], b[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
           SHUFFLE8(b[2 * i], b[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  return SHUFFLE8(c[0], c[1], 0, 1, 2, 3, 8, 9, 10, 11) +
         SHUFFLE8(c[0], c[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

// Scores of LANES consecutive rows of a block against one head's query (DIM > 0 only).
template <int64_t DIM, typename T>
inline vec8 scores8(const vec8* q, const T* k, int64_t row_stride) {
  vec8 acc[LANES];
  for (int64_t r = 0; r < LANES; ++r) {
    const T* row = k + r * row_stride;
    acc[r] = q[0] * load8(row);
    for (int64_t c = 1; c < DIM / LANES; ++c) acc[r] += q[c] * load8(row + c * LANES);
  }
  return sum8x8(acc);
}

// Calls visit(rows of the block, first position, number of positions) for each block of the
// sequence's context in order, asking for the next block's first rows while this one is worked on.
template <typename T, typename Visit>
inline void for_each_block(const Span<T>& s, const T* base, Visit&& visit) {
  prefetch_block(base, s, 0);
  for (int64_t j = 0, start = 0; start < s.len; ++j, start += s.block_size) {
    prefetch_block(base, s, j + 1);
    visit(base + s.table[j] * s.block_size * s.row_stride, start, std::min(s.block_size, s.len - start));
  }
}

// Scores of each block's positions, head by head: the head's query stays in registers while the
// block's rows (contiguous, in L1 after the first head of a KV group) stream past it.
template <int64_t DIM, typename T>
void scores_of(const Span<T>& s, float* score) {
  const int64_t dim = DIM > 0 ? DIM : s.dim, stride = s.row_stride;
  for_each_block(s, s.keys, [&](const T* block, int64_t start, int64_t rows) {
    for (int64_t h = 0; h < s.count; ++h) {
      const T* k = block + (h / s.group) * dim;
      const float* q = s.q + h * dim;
      float* out = score + h * s.len + start;
      int64_t i = 0;
      if constexpr (DIM > 0) {
        vec8 qv[DIM / LANES];
        for (int64_t c = 0; c < DIM / LANES; ++c) qv[c] = load8(q + c * LANES);
        for (; i + LANES <= rows; i += LANES) {
          *reinterpret_cast<vec8_unaligned*>(out + i) = scores8<DIM>(qv, k + i * stride, stride) * s.scale;
        }
      }
      for (; i < rows; ++i) out[i] = dot<DIM>(q, k + i * stride, dim) * s.scale;
    }
  });
}

// out[h] = sum over positions of weight[h, p] * V[p, h], one block at a time, head by head, the
// head's running sum held in registers across the block.
template <int64_t DIM, typename T>
void weighted_values(const Span<T>& s, const float* score) {
  const int64_t dim = DIM > 0 ? DIM : s.dim, stride = s.row_stride;
  std::fill(s.out, s.out + s.count * dim, 0.f);
  for_each_block(s, s.values, [&](const T* block, int64_t start, int64_t rows) {
    for (int64_t h = 0; h < s.count; ++h) {
      const T* v = block + (h / s.group) * dim;
      const float* weight = score + h * s.len + start;
      float* out = s.out + h * dim;
      if constexpr (DIM > 0) {
        vec8 sum[DIM / LANES];
        for (int64_t c = 0; c < DIM / LANES; ++c) sum[c] = load8(out + c * LANES);
        for (int64_t i = 0; i < rows; ++i, v += stride) {
          for (int64_t c = 0; c < DIM / LANES; ++c) sum[c] += weight[i] * load8(v + c * LANES);
        }
        for (int64_t c = 0; c < DIM / LANES; ++c) {
          *reinterpret_cast<vec8_unaligned*>(out + c * LANES) = sum[c];
        }
      } else {
        for (int64_t i = 0; i < rows; ++i, v += stride) {
#pragma omp simd
          for (int64_t d = 0; d < dim; ++d) out[d] += weight[i] * static_cast<float>(v[d]);
        }
      }
    }
  });
}

// Each head's scores become exp(score - max) in place; inverse[h] is 1 / their sum.
inline void softmax_rows(float* score, int64_t count, int64_t len, float* inverse) {
  for (int64_t h = 0; h < count; ++h) {
    float* row = score + h * len;
    float highest = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : highest)
    for (int64_t p = 0; p < len; ++p) highest = row[p] > highest ? row[p] : highest;
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int64_t p = 0; p < len; ++p) {
      const float weight = exp_nonpositive(row[p] - highest);
      row[p] = weight;
      total += weight;
    }
    inverse[h] = 1.f / total;
  }
}

template <int64_t DIM, typename T>
void attend_span(const Span<T>& s, std::vector<float>& scratch) {
  const int64_t dim = DIM > 0 ? DIM : s.dim;
  scratch.resize(static_cast<size_t>(s.count * (s.len + 1)));
  float* score = scratch.data();
  float* inverse = score + s.count * s.len;
  scores_of<DIM>(s, score);
  softmax_rows(score, s.count, s.len, inverse);
  weighted_values<DIM>(s, score);
  for (int64_t h = 0; h < s.count; ++h) {
    float* oh = s.out + h * dim;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) oh[d] *= inverse[h];
  }
}

// The head sizes models use, as compile-time constants; any other size takes the generic loop.
template <typename T>
void attend_span_any(const Span<T>& s, std::vector<float>& scratch) {
  switch (s.dim) {
    case 32: attend_span<32>(s, scratch); break;
    case 64: attend_span<64>(s, scratch); break;
    case 128: attend_span<128>(s, scratch); break;
    default: attend_span<0>(s, scratch);
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
    std::vector<float> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / slices, first_kv = (i % slices) * kv_per_slice;
      const int64_t kv_count = std::min(kv_per_slice, kv_heads - first_kv);
      if (kv_count <= 0) continue;
      const int64_t first = first_kv * group;
      Span<T> span{q_data + (b * heads + first) * dim, k_data + first_kv * dim, v_data + first_kv * dim,
                   table_data + b * width, len_data[b], block_size, row_stride, dim, kv_count * group,
                   group, scale, out_data + (b * heads + first) * dim};
      attend_span_any(span, scratch);
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
