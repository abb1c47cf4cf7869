#include "attncache/model/llama_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/decoder_ops.h"
#include "attncache/kernels/cuda/gemm.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/cuda_forward.h"
#include "core/error.h"

namespace attncache {
namespace {

using cuda_forward::align_up;
using cuda_forward::kMiB;
using Phase = cuda_forward::PhaseTimer::Phase;
using cuda_forward::kGemmWorkspace;
constexpr int kRows = cuda::kAttentionRows;
// Mean tokens per sequence from which 128-row query blocks run; with wgmma and head 64, from
// 3072 (see Impl::run).
constexpr int kWideMinTokens = 768;
constexpr int kWideMinTokensWgmmaHead64 = 3072;
// Mean tokens per sequence from which reuse runs the grouped kernel with head 64, where its units
// are few (with head 128: kWideMinTokens; see Impl::run).
constexpr int kGroupedMinTokensHead64 = 2048;
// With head 128 the grouped kernel takes its units in four bands of items for fewer sequences
// than this of at least this many tokens on average, else head group by head group (measured
// at 1, 8 and 32 sequences of 835, 2048 and 4096 tokens; see Impl::run).
constexpr int kGroupedFewSequences = 16;
constexpr int kGroupedBandsMinTokens = 1024;

struct LayerWeights {
  size_t attn_norm, qkv_w, qkv_b, o_w, ffn_norm, gate_up_w, down_w;
};

size_t qkv_width(const LlamaConfig& c) {
  return static_cast<size_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
}

// Device bytes of the activations for a batch of `tokens` tokens (all bf16).
size_t activation_bytes_for(const LlamaConfig& c, size_t tokens) {
  const size_t d = c.hidden_size, ff = c.intermediate_size;
  const size_t per_token = 3 * d * 2           // residual ×2, normed
                           + qkv_width(c) * 2  // qkv
                           + static_cast<size_t>(c.num_heads) * c.head_dim * 2  // context
                           + 3 * ff * 2;  // gate|up, SwiGLU output
  return tokens * per_token;
}

// Device staging for maps streamed from host memory: two layers' worth, used in turn. Events
// order the copies (copy stream) against the kernels that read them (compute stream).
struct MapStaging {
  cudaStream_t copy = nullptr;
  cudaEvent_t fork = nullptr, copied[2] = {}, consumed[2] = {};
  cuda::DeviceBuffer ring[2];

  void create() {
    cuda::check(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t* e : {&fork, &copied[0], &copied[1], &consumed[0], &consumed[1]}) {
      cuda::check(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
    }
  }
  ~MapStaging() {
    for (cudaEvent_t e : {fork, copied[0], copied[1], consumed[0], consumed[1]}) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (copy != nullptr) cudaStreamDestroy(copy);
  }
};

// The batch tables, at these offsets in one upload: ids, positions, sequence offsets, lengths,
// last rows, work items (every query block; the last block of each sequence), next-token
// targets (int32), then the map slots.
struct BatchLayout {
  enum {
    kIds,
    kPositions,
    kOffsets,
    kLengths,
    kLast,
    kItems,
    kLastItems,
    kWideItems,
    kTargets,
    kSlots,
    kCount
  };
  size_t at[kCount + 1] = {};
};

struct Batch {
  std::vector<int> lengths, first_row;
  int total = 0, num_items = 0;
  int num_wide_items = 0;   // 128-row query blocks; 0: 64-row blocks
  bool exact_wide = false;  // whether the exact kernel takes the 128-row blocks too
  // Whether the reuse kernel runs 64-row blocks with the query heads that share a KV head in one
  // CTA (cuda::AttentionArgs::group_heads), a CTA per SM, instead; in which unit order
  // (cuda::AttentionArgs::grouped_band_items).
  bool reuse_grouped = false;
  int reuse_band_items = 0;
  BatchLayout layout;
  const DeviceMapPlan* maps = nullptr;
  // With host-resident maps: per slot, its offset in its layer's staging buffer.
  std::vector<size_t> staged_at;
  size_t staged_layer_bytes = 0;
};

// The output buffer of a batch: fp32 results (rows × cols), then the rows after the final
// RMSNorm in bf16, 256-byte aligned (the LM head's GEMM reads them). Sized in run(), addressed
// in enqueue_batch().
struct OutputLayout {
  bool every_token;  // one row per token, else one per sequence (its last token)
  size_t rows, cols, d;
  size_t result_bytes() const { return rows * cols * 4; }
  size_t normed_at() const { return align_up(result_bytes(), 256); }
  size_t bytes() const { return normed_at() + rows * d * 2; }
};

OutputLayout output_layout(CudaLlamaModel::Output output, const LlamaConfig& c, int tokens,
                           int nseq) {
  using Output = CudaLlamaModel::Output;
  const bool every_token = output == Output::kAllHidden || output == Output::kTokenLogProbs;
  const size_t cols = output == Output::kLastLogits      ? c.vocab_size
                      : output == Output::kTokenLogProbs ? 1
                                                         : c.hidden_size;
  return {every_token, static_cast<size_t>(every_token ? tokens : nseq), cols,
          static_cast<size_t>(c.hidden_size)};
}

}  // namespace

struct CudaLlamaModel::Impl {
  LlamaConfig config;
  CudaDecoderOptions options;
  std::string device;
  int sm_count = 0;
  bool wgmma = false;  // cuda::attention_uses_wgmma()
  cudaStream_t stream = nullptr;
  std::vector<float> inv_freq;
  bool rope_neox = false;

  cuda::DeviceBuffer weights;
  size_t embedding = 0, output_norm = 0, lm_head = 0;
  std::vector<LayerWeights> layers;
  std::unique_ptr<cuda::Gemm> gemm;

  // Activations, sized for `capacity` tokens; rotary tables for `rope_positions` positions.
  size_t capacity = 0;
  cuda::DeviceBuffer hid, tmp, normed, qkv, ctx, gate_up, act;
  int rope_positions = 0;
  cuda::DeviceBuffer rope_cos, rope_sin;
  // Per-batch tables (pinned host staging + device copy) and outputs; a slice of rows' logits
  // for Output::kTokenLogProbs.
  cuda::DeviceBuffer meta, out, logits;
  cuda_forward::PinnedBuffer host_meta, host_out;
  MapStaging staging;
  cuda_forward::GraphCache graphs;
  cuda_forward::PhaseTimer timer;
  CudaProfile totals;

  ~Impl() {
    graphs.clear();
    gemm.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  template <typename T>
  const T* w(size_t offset) const {
    return reinterpret_cast<const T*>(static_cast<const char*>(weights.data()) + offset);
  }
  void mark(Phase next) { timer.mark(next, stream); }

  size_t used_bytes() const {
    return weights.size() + kGemmWorkspace + activation_bytes_for(config, capacity) +
           staging.ring[0].size() + staging.ring[1].size() + out.size() + logits.size();
  }
  void check_budget(size_t more, const char* what) const {
    if (options.memory_limit != 0 && used_bytes() + more > options.memory_limit) {
      core::throw_bad_input("the GPU decoder's memory limit (", options.memory_limit / kMiB,
                            " MiB) is too small for ", what, " (", more / kMiB, " MiB more)");
    }
  }

  void reserve_tokens(size_t tokens) {
    if (tokens <= capacity) return;
    const LlamaConfig& c = config;
    const size_t d = c.hidden_size, ff = c.intermediate_size;
    check_budget(activation_bytes_for(c, tokens) - activation_bytes_for(c, capacity),
                 "the activations of a larger batch");
    graphs.clear();
    hid = {}, tmp = {}, normed = {}, qkv = {}, ctx = {}, gate_up = {}, act = {};
    capacity = 0;
    hid = cuda::DeviceBuffer(tokens * d * 2, "activations (residual stream)");
    tmp = cuda::DeviceBuffer(tokens * d * 2, "activations (residual stream)");
    normed = cuda::DeviceBuffer(tokens * d * 2, "activations (normed)");
    qkv = cuda::DeviceBuffer(tokens * qkv_width(c) * 2, "activations (Q, K, V)");
    ctx = cuda::DeviceBuffer(tokens * c.num_heads * c.head_dim * 2, "activations (attention)");
    gate_up = cuda::DeviceBuffer(tokens * 2 * ff * 2, "activations (MLP gate and up)");
    act = cuda::DeviceBuffer(tokens * ff * 2, "activations (MLP)");
    capacity = tokens;
  }

  void reserve_rope(int positions) {
    if (positions <= rope_positions) return;
    const int count = static_cast<int>(align_up(positions, 1024));
    cpu::Rope rope{inv_freq, rope_neox};
    std::vector<float> cos, sin;
    rope.angles(0, count, &cos, &sin);
    graphs.clear();
    rope_cos = cuda::DeviceBuffer(cos.size() * 4, "rotary tables");
    rope_sin = cuda::DeviceBuffer(sin.size() * 4, "rotary tables");
    rope_cos.upload(cos.data(), cos.size() * 4);
    rope_sin.upload(sin.data(), sin.size() * 4);
    rope_positions = count;
  }

  void reserve(cuda::DeviceBuffer* buffer, size_t bytes, const char* what) {
    if (bytes <= buffer->size()) return;
    check_budget(bytes - buffer->size(), what);
    graphs.clear();
    *buffer = {};
    *buffer = cuda::DeviceBuffer(bytes, what);
  }

  size_t map_bytes(core::DType dtype, int n) const {
    if (dtype == core::DType::kP4) return cuda::p4_map_bytes(n, config.num_heads);
    return static_cast<size_t>(config.num_heads) * cuda::causal_map_elements(n) *
           core::dtype_size(dtype);
  }

  std::vector<float> run(const std::vector<std::vector<int32_t>>& batch, Output output,
                         const DeviceMapPlan* maps);
  void enqueue_batch(const Batch& b, Output output);
};

CudaLlamaModel::CudaLlamaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaLlamaModel::~CudaLlamaModel() = default;

const LlamaConfig& CudaLlamaModel::config() const { return impl_->config; }
const std::string& CudaLlamaModel::device_description() const { return impl_->device; }
size_t CudaLlamaModel::weight_bytes() const { return impl_->weights.size(); }
size_t CudaLlamaModel::activation_bytes() const {
  return activation_bytes_for(impl_->config, impl_->capacity);
}
const CudaProfile& CudaLlamaModel::profile() const { return impl_->totals; }
void CudaLlamaModel::reset_profile() { impl_->totals = {}; }

size_t CudaLlamaModel::map_bytes(int n_tokens, core::DType dtype) const {
  return impl_->map_bytes(dtype, n_tokens);
}

std::unique_ptr<CudaLlamaModel> CudaLlamaModel::create(const LlamaModel& host,
                                                       const CudaDecoderOptions& options) {
  const LlamaConfig& c = host.config();
  if (!cuda::attention_supports_head_dim(c.head_dim)) {
    core::throw_bad_input("the GPU decoder supports head sizes 16, 32, 64 and 128, not ",
                          c.head_dim);
  }
  if (c.hidden_size % 2 != 0 || c.intermediate_size % 2 != 0) {
    core::throw_bad_input("the GPU decoder needs even hidden and intermediate sizes");
  }
  if (c.num_heads > 64) core::throw_bad_input("the GPU decoder supports at most 64 heads");
  if (options.max_batch_tokens <= 0) core::throw_bad_input("max_batch_tokens must be positive");

  auto impl = std::make_unique<Impl>();
  impl->config = c;
  impl->options = options;
  impl->inv_freq = host.rope().inv_freq;
  impl->rope_neox = host.rope().neox;
  impl->device = cuda_forward::open_device(options.device);
  cuda::check(
      cudaDeviceGetAttribute(&impl->sm_count, cudaDevAttrMultiProcessorCount, options.device),
      "cudaDeviceGetAttribute");
  impl->wgmma = cuda::attention_uses_wgmma();

  auto lay_out = [&](cuda_forward::WeightImage& image) {
    impl->embedding = image.add_bf16(host.token_embedding());
    impl->output_norm = image.add_f32(host.output_norm());
    impl->lm_head = host.lm_head().data() == host.token_embedding().data()
                        ? impl->embedding
                        : image.add_bf16(host.lm_head());
    impl->layers.clear();
    for (const LlamaModel::Layer& l : host.layers()) {
      LayerWeights lw{};
      lw.attn_norm = image.add_f32(l.attn_norm);
      lw.qkv_w = image.add_bf16(l.qkv_w);
      lw.qkv_b = l.qkv_b.empty() ? SIZE_MAX : image.add_bf16(l.qkv_b);
      lw.o_w = image.add_bf16(l.o_w);
      lw.ffn_norm = image.add_f32(l.ffn_norm);
      lw.gate_up_w = image.add_bf16(l.gate_up_w);
      lw.down_w = image.add_bf16(l.down_w);
      impl->layers.push_back(lw);
    }
  };
  cuda_forward::WeightImage measured;
  lay_out(measured);
  const size_t tokens = static_cast<size_t>(options.max_batch_tokens);
  const size_t weights = measured.size();
  const size_t activations = activation_bytes_for(c, tokens);
  cuda_forward::check_fits(options.device, impl->device, options.memory_limit, weights, activations,
                           tokens, "the decoder");

  cuda::check(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  impl->staging.create();
  impl->weights = cuda::DeviceBuffer(weights, "the model weights");
  cuda_forward::WeightImage image(weights);
  lay_out(image);
  impl->weights.upload(image.data(), weights);
  impl->gemm = std::make_unique<cuda::Gemm>(kGemmWorkspace);
  impl->reserve_tokens(tokens);
  impl->reserve_rope(std::min(c.context_length > 0 ? c.context_length : 4096, 4096));
  return std::unique_ptr<CudaLlamaModel>(new CudaLlamaModel(std::move(impl)));
}

std::vector<float> CudaLlamaModel::forward(const std::vector<std::vector<int32_t>>& batch,
                                           Output output, const DeviceMapPlan* maps) {
  return impl_->run(batch, output, maps);
}

std::vector<float> CudaLlamaModel::Impl::run(const std::vector<std::vector<int32_t>>& batch,
                                             Output output, const DeviceMapPlan* maps) {
  const LlamaConfig& c = config;
  const int nseq = static_cast<int>(batch.size());
  if (nseq == 0) return {};
  Batch b;
  b.lengths.resize(nseq);
  b.first_row.resize(nseq);
  int longest = 0;
  cuda_forward::check_batch(
      batch, c.context_length > 0 ? c.context_length : std::numeric_limits<int>::max(),
      c.vocab_size, "the model's context is ");
  for (int s = 0; s < nseq; ++s) {
    const int n = static_cast<int>(batch[s].size());
    b.lengths[s] = n;
    b.first_row[s] = b.total;
    b.total += n;
    b.num_items += (n + kRows - 1) / kRows;
    b.num_wide_items += (n + 2 * kRows - 1) / (2 * kRows);
    longest = std::max(longest, n);
  }
  // 128-row query blocks (two wgmma row tiles per CTA, or 32 rows per warp with mma.sync) halve
  // the value (and key) traffic per query row. The reuse kernel takes them from a mean of 768
  // tokens, while they give every SM two: with P8 maps they are 1.11-1.27x faster than 64-row
  // blocks at the 3B shapes that use them (H100, bench/results/gpu_attention_*_h100.json). With
  // head 64 and wgmma, 64-row P8 blocks are 3-7% faster at 1B's 8 and 32 x 835 and 32 x 2048, and
  // level or 4% slower at 4096 tokens (bench/results/attention_variants_h100_unconditional).
  const int wide_min_tokens =
      wgmma && c.head_dim == 64 ? kWideMinTokensWgmmaHead64 : kWideMinTokens;
  if (b.total < static_cast<int64_t>(wide_min_tokens) * nseq ||
      static_cast<int64_t>(b.num_wide_items) * c.num_heads < 2 * sm_count) {
    b.num_wide_items = 0;
  }
  // The exact kernel with wgmma is faster with 64-row blocks at every head-64 shape, and with
  // head 128 until the 128-row blocks give each SM about eight (one-layer timings in
  // bench/results/gpu_decoder_bench_*_h100.json, which agree with this choice at every shape but
  // 3B 1 x 4096, where 128 rows are 2% faster).
  b.exact_wide = b.num_wide_items > 0 &&
                 (!wgmma || (c.head_dim == 128 &&
                             static_cast<int64_t>(b.num_wide_items) * c.num_heads >= 8 * sm_count));
  // Grouped reuse reads each value tile once for the query heads that share it: 2 bytes of V
  // per byte of P8 map with head 128 and 64-row blocks, 1 with 128-row ones, 2/3 grouped in
  // threes. It runs persistent. With head 128, P8 against the faster row count at 3B's shapes
  // from 835 tokens, in two H100 runs (bench/results/attention_grouped_h100/unit_orders and
  // four_bands): head group by head group over all items 1.04-1.18x at 1 x 835, 8 x 835 and
  // 32 x 835-4096 (four bands: 0.98-1.17x there); in four bands of items (longest band first;
  // head group by head group within each, so the CTAs at work at once share value tiles in L2)
  // 1.06-1.44x at 1 and 8 x 2048-4096, where head group by head group gives 0.82-1.04x (few
  // rounds load the CTAs unevenly). With head 64, four bands 1.12-1.20x at 1B's batch 1 from
  // 2048 tokens, 0.89-1.00x with more units or fewer tokens.
  cuda::AttentionArgs shape;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.causal = true;
  shape.group_heads = wgmma;
  const int heads_per_cta = cuda::reuse_heads_per_cta(shape);
  auto mean_at_least = [&](int tokens) { return b.total >= static_cast<int64_t>(tokens) * nseq; };
  if (c.head_dim == 128) {
    b.reuse_grouped = heads_per_cta > 0 && mean_at_least(kWideMinTokens);
    const bool few_long = nseq < kGroupedFewSequences && mean_at_least(kGroupedBandsMinTokens);
    b.reuse_band_items = few_long ? cuda::grouped_four_bands(b.num_items) : 0;
  } else {
    b.reuse_grouped =
        heads_per_cta > 0 && mean_at_least(kGroupedMinTokensHead64) &&
        static_cast<int64_t>(b.num_items) * (c.num_heads / heads_per_cta) <= 4 * int64_t{sm_count};
    b.reuse_band_items = cuda::grouped_four_bands(b.num_items);
  }
  const uint64_t all_heads = cuda_forward::all_heads_mask(c.num_heads);
  if (maps != nullptr && !maps->slots.empty()) {
    cuda_forward::check_map_plan(*maps, c.num_layers, nseq, /*causal=*/true);
    if (maps->host_resident) {
      for (const auto& slot : maps->slots) {
        if (slot.record != nullptr) {
          core::throw_bad_input("maps are recorded into device memory only");
        }
      }
      // Each layer's maps go to one staging buffer, sequence after sequence.
      b.staged_at.resize(maps->slots.size());
      for (int li = 0; li < c.num_layers; ++li) {
        size_t at = 0;
        for (int s = 0; s < nseq; ++s) {
          const auto& slot = maps->slots[static_cast<size_t>(li) * nseq + s];
          b.staged_at[static_cast<size_t>(li) * nseq + s] = at;
          if (slot.stored != nullptr) at += align_up(map_bytes(slot.dtype, b.lengths[s]), 256);
        }
        b.staged_layer_bytes = std::max(b.staged_layer_bytes, at);
      }
      for (auto& buffer : staging.ring) reserve(&buffer, b.staged_layer_bytes, "map staging");
    }
    b.maps = maps;
  }

  BatchLayout& L = b.layout;
  const size_t sizes[BatchLayout::kCount] = {
      static_cast<size_t>(b.total) * 4,
      static_cast<size_t>(b.total) * 4,
      static_cast<size_t>(nseq) * 4,
      static_cast<size_t>(nseq) * 4,
      static_cast<size_t>(nseq) * 4,
      static_cast<size_t>(b.num_items) * 8,
      static_cast<size_t>(nseq) * 8,
      static_cast<size_t>(b.num_wide_items) * 8,
      static_cast<size_t>(b.total) * 4,
      b.maps != nullptr ? b.maps->slots.size() * sizeof(cuda::DeviceMapSlot) : 0};
  for (int i = 0; i < BatchLayout::kCount; ++i) L.at[i + 1] = L.at[i] + align_up(sizes[i], 16);
  const size_t meta_bytes = L.at[BatchLayout::kCount];
  reserve_tokens(static_cast<size_t>(b.total));
  reserve_rope(longest);
  const OutputLayout out_layout = output_layout(output, c, b.total, nseq);
  reserve(&meta, meta_bytes, "batch tables");
  reserve(&out, out_layout.bytes(), "outputs");
  if (output == Output::kTokenLogProbs) {
    const size_t row_bytes = static_cast<size_t>(c.vocab_size) * 4;
    const size_t rows = std::clamp<size_t>(options.logits_slice_bytes / row_bytes, 1, b.total);
    reserve(&logits, rows * row_bytes, "logits");
  }
  if (host_meta.reserve(meta_bytes, "batch tables")) graphs.clear();
  if (host_out.reserve(out_layout.result_bytes(), "results")) graphs.clear();

  char* h = static_cast<char*>(host_meta.data());
  int* ids = reinterpret_cast<int*>(h + L.at[BatchLayout::kIds]);
  int* positions = reinterpret_cast<int*>(h + L.at[BatchLayout::kPositions]);
  int* offsets = reinterpret_cast<int*>(h + L.at[BatchLayout::kOffsets]);
  int* lens = reinterpret_cast<int*>(h + L.at[BatchLayout::kLengths]);
  int* last = reinterpret_cast<int*>(h + L.at[BatchLayout::kLast]);
  int* items = reinterpret_cast<int*>(h + L.at[BatchLayout::kItems]);
  int* last_items = reinterpret_cast<int*>(h + L.at[BatchLayout::kLastItems]);
  int* targets = reinterpret_cast<int*>(h + L.at[BatchLayout::kTargets]);
  for (int s = 0, row = 0; s < nseq; ++s) {
    offsets[s] = row;
    lens[s] = b.lengths[s];
    last[s] = row + b.lengths[s] - 1;
    last_items[2 * s] = s;
    last_items[2 * s + 1] = (b.lengths[s] - 1) / kRows;
    for (int i = 0; i < b.lengths[s]; ++i, ++row) {
      ids[row] = batch[s][i];
      positions[row] = i;
      targets[row] = i + 1 < b.lengths[s] ? batch[s][i + 1] : -1;
    }
  }
  // Work items of `rows` query rows, the longest (last query blocks, which see the most keys)
  // first.
  auto write_items = [&](int rows, int* out_items) {
    std::vector<std::pair<int, int>> work;
    for (int s = 0; s < nseq; ++s) {
      for (int q = 0; q * rows < b.lengths[s]; ++q) work.emplace_back(s, q);
    }
    std::stable_sort(work.begin(), work.end(),
                     [](const auto& x, const auto& y) { return x.second > y.second; });
    for (size_t i = 0; i < work.size(); ++i) {
      out_items[2 * i] = work[i].first;
      out_items[2 * i + 1] = work[i].second;
    }
  };
  write_items(kRows, items);
  if (b.num_wide_items > 0) {
    write_items(2 * kRows, reinterpret_cast<int*>(h + L.at[BatchLayout::kWideItems]));
  }
  if (b.maps != nullptr) {
    auto* dev_slots = reinterpret_cast<cuda::DeviceMapSlot*>(h + L.at[BatchLayout::kSlots]);
    for (size_t i = 0; i < b.maps->slots.size(); ++i) {
      const auto& slot = b.maps->slots[i];
      const void* stored = slot.stored;
      if (b.maps->host_resident && stored != nullptr) {
        const size_t layer = i / nseq;
        stored = static_cast<const char*>(staging.ring[layer % 2].data()) + b.staged_at[i];
      }
      dev_slots[i] = cuda_forward::device_slot(slot, stored);
    }
  }

  // The shape: everything that decides which kernels and copies run with which sizes. Host
  // map addresses are part of it (the graph's copies read them).
  std::vector<int64_t> key{static_cast<int64_t>(output), b.total};
  key.insert(key.end(), b.lengths.begin(), b.lengths.end());
  if (b.maps != nullptr) {
    key.push_back(b.maps->host_resident ? 1 : 0);
    for (const auto& slot : b.maps->slots) {
      key.push_back(cuda_forward::slot_shape(slot, all_heads));
      if (b.maps->host_resident) key.push_back(reinterpret_cast<int64_t>(slot.stored));
    }
  }

  auto enqueue = [&] { enqueue_batch(b, output); };
  const bool replayed = options.cuda_graphs && graphs.replay(key, stream, enqueue);
  if (!replayed) {
    timer.start(options.profile);
    mark(Phase::kOther);
    enqueue();
    mark(Phase::kOther);
    timer.stop();
  }
  cuda::check(cudaStreamSynchronize(stream), "the GPU decoder's batch");
  if (!replayed && options.profile) timer.collect(&totals);
  const float* result = static_cast<const float*>(host_out.data());
  return std::vector<float>(result, result + out_layout.rows * out_layout.cols);
}

void CudaLlamaModel::Impl::enqueue_batch(const Batch& b, Output output) {
  const LlamaConfig& c = config;
  const int d = c.hidden_size, ff = c.intermediate_size;
  const int nseq = static_cast<int>(b.lengths.size());
  const int q_width = c.num_heads * c.head_dim, width = static_cast<int>(qkv_width(c));
  const BatchLayout& L = b.layout;
  char* dm = static_cast<char*>(meta.data());
  const int* ids = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kIds]);
  const int* positions = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kPositions]);
  const int* offsets = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kOffsets]);
  const int* lens = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kLengths]);
  const int* last = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kLast]);
  const int* items = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kItems]);
  const int* last_items = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kLastItems]);
  const int* wide_items = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kWideItems]);
  const int* targets = reinterpret_cast<const int*>(dm + L.at[BatchLayout::kTargets]);
  const auto* dev_slots =
      reinterpret_cast<const cuda::DeviceMapSlot*>(dm + L.at[BatchLayout::kSlots]);
  cuda::check(cudaMemcpyAsync(meta.data(), host_meta.data(), L.at[BatchLayout::kCount],
                              cudaMemcpyHostToDevice, stream),
              "cudaMemcpyAsync (batch tables)");
  const std::vector<DeviceMapPlan::Slot>* slots = b.maps != nullptr ? &b.maps->slots : nullptr;
  const bool streamed = b.maps != nullptr && b.maps->host_resident;
  const uint64_t all_heads = cuda_forward::all_heads_mask(c.num_heads);

  // Host-resident maps: layer li's are copied into ring[li % 2] once the kernels of layer li − 2
  // (the ring slot's previous user) are done.
  auto stage_layer = [&](int li) {
    if (li >= c.num_layers) return;
    const int buf = li % 2;
    if (li >= 2) {
      cuda::check(cudaStreamWaitEvent(staging.copy, staging.consumed[buf]), "cudaStreamWaitEvent");
    }
    for (int s = 0; s < nseq; ++s) {
      const size_t i = static_cast<size_t>(li) * nseq + s;
      const auto& slot = (*slots)[i];
      if (slot.stored == nullptr) continue;
      cuda::check(cudaMemcpyAsync(static_cast<char*>(staging.ring[buf].data()) + b.staged_at[i],
                                  slot.stored, map_bytes(slot.dtype, b.lengths[s]),
                                  cudaMemcpyHostToDevice, staging.copy),
                  "cudaMemcpyAsync (attention maps)");
    }
    cuda::check(cudaEventRecord(staging.copied[buf], staging.copy), "cudaEventRecord");
  };
  if (streamed) {
    cuda::check(cudaEventRecord(staging.fork, stream), "cudaEventRecord");
    cuda::check(cudaStreamWaitEvent(staging.copy, staging.fork), "cudaStreamWaitEvent");
    stage_layer(0);
  }

  uint16_t* x = hid.as<uint16_t>();  // the residual stream
  uint16_t* y = tmp.as<uint16_t>();  // the residual stream after attention
  uint16_t* nrm = normed.as<uint16_t>();
  uint16_t* q = qkv.as<uint16_t>();
  const OutputLayout out_layout = output_layout(output, c, b.total, nseq);
  // Whether the last layer ran on each sequence's last row only (its keys and values still
  // cover every token): x then holds one row per sequence.
  bool last_rows_only = false;
  cuda::embed_rows(ids, w<uint16_t>(embedding), x, b.total, d, stream);
  std::vector<char> v_only;
  for (int li = 0; li < c.num_layers; ++li) {
    const LayerWeights& l = layers[li];
    const cuda_forward::LayerReuse reuse =
        cuda_forward::layer_reuse(slots, li, nseq, all_heads, &v_only);
    // An output of last rows needs nothing of the last layer's other rows past their keys and
    // values, unless the layer records its maps.
    last_rows_only = li == c.num_layers - 1 && !out_layout.every_token && !reuse.any_record;
    if (streamed) stage_layer(li + 1);
    mark(Phase::kOther);
    cuda::rmsnorm(x, nullptr, w<float>(l.attn_norm), c.rms_norm_eps, nrm, nullptr, b.total, d,
                  stream);
    // One projection per run of sequences that agree on V-only: [Q K V] for the others, then
    // their rotary embedding.
    mark(Phase::kQkv);
    for (int s0 = 0; s0 < nseq;) {
      int s1 = s0 + 1;
      while (s1 < nseq && v_only[s1] == v_only[s0]) ++s1;
      const int first = b.first_row[s0];
      const int rows = b.first_row[s1 - 1] + b.lengths[s1 - 1] - first;
      const int skip = v_only[s0] ? q_width + c.num_kv_heads * c.head_dim : 0;
      const bool bias = l.qkv_b != SIZE_MAX;
      gemm->linear(nrm + static_cast<size_t>(first) * d, d,
                   w<uint16_t>(l.qkv_w) + static_cast<size_t>(skip) * d, d,
                   q + static_cast<size_t>(first) * width + skip, width, cuda::OutType::kBF16, rows,
                   width - skip, d, bias ? cuda::Epilogue::kBias : cuda::Epilogue::kNone,
                   bias ? w<uint16_t>(l.qkv_b) + skip : nullptr, stream);
      if (!v_only[s0]) {
        cuda::rope(q + static_cast<size_t>(first) * width, width, positions + first,
                   rope_cos.as<float>(), rope_sin.as<float>(), rows, c.num_heads, c.num_kv_heads,
                   c.head_dim, static_cast<int>(inv_freq.size()), rope_neox, stream);
      }
      s0 = s1;
    }
    cuda::AttentionArgs args;
    args.qkv = q;
    args.ctx = ctx.data();
    args.seq_offset = offsets;
    args.seq_len = lens;
    args.items = last_rows_only ? last_items : items;
    args.num_items = last_rows_only ? nseq : b.num_items;
    args.wide_items = b.num_wide_items > 0 && !last_rows_only ? wide_items : nullptr;
    args.num_wide_items = args.wide_items != nullptr ? b.num_wide_items : 0;
    args.num_heads = c.num_heads;
    args.num_kv_heads = c.num_kv_heads;
    args.head_dim = c.head_dim;
    args.causal = true;
    args.maps = slots != nullptr ? dev_slots + static_cast<size_t>(li) * nseq : nullptr;
    mark(Phase::kAttention);
    if (reuse.any_exact) {
      cuda::AttentionArgs exact = args;
      if (!b.exact_wide) {
        exact.wide_items = nullptr;
        exact.num_wide_items = 0;
      }
      cuda::attention_exact(exact, reuse.any_record, stream);
    }
    if (streamed) {
      cuda::check(cudaStreamWaitEvent(stream, staging.copied[li % 2]), "cudaStreamWaitEvent");
    }
    if (b.reuse_grouped && !last_rows_only) {
      cuda::AttentionArgs grouped = args;
      grouped.wide_items = nullptr;
      grouped.num_wide_items = 0;
      grouped.group_heads = true;
      grouped.grouped_ctas = sm_count;
      grouped.grouped_band_items = b.reuse_band_items;
      cuda_forward::attention_reuse(grouped, reuse, stream);
    } else {
      cuda_forward::attention_reuse(args, reuse, stream);
    }
    if (streamed) cuda::check(cudaEventRecord(staging.consumed[li % 2], stream), "cudaEventRecord");

    // The rest of the layer on every row, or on the last rows gathered: their attention output
    // into the spent Q/K/V buffer, their residual rows into the normed one.
    const void* attended = ctx.data();
    const uint16_t* residual = x;
    int rows = b.total;
    if (last_rows_only) {
      mark(Phase::kOther);
      // embed_rows gathers rows of any bf16 table: here the activations.
      cuda::embed_rows(last, ctx.data(), q, nseq, q_width, stream);
      cuda::embed_rows(last, x, nrm, nseq, d, stream);
      attended = q;
      residual = nrm;
      rows = nseq;
    }
    mark(Phase::kGemm);
    gemm->linear(attended, q_width, w<uint16_t>(l.o_w), q_width, y, d, cuda::OutType::kBF16, rows,
                 d, q_width, cuda::Epilogue::kNone, nullptr, stream, residual);
    mark(Phase::kOther);
    cuda::rmsnorm(y, nullptr, w<float>(l.ffn_norm), c.rms_norm_eps, nrm, nullptr, rows, d, stream);
    mark(Phase::kGemm);
    gemm->linear(nrm, d, w<uint16_t>(l.gate_up_w), d, gate_up.data(), 2 * ff, cuda::OutType::kBF16,
                 rows, 2 * ff, d, cuda::Epilogue::kNone, nullptr, stream);
    cuda::silu_mul(gate_up.data(), act.data(), rows, ff, stream);
    gemm->linear(act.data(), ff, w<uint16_t>(l.down_w), ff, x, d, cuda::OutType::kBF16, rows, d, ff,
                 cuda::Epilogue::kNone, nullptr, stream, y);
  }

  mark(Phase::kOther);
  const int* final_rows = last_rows_only ? nullptr : last;
  const int rows = static_cast<int>(out_layout.rows);
  float* out_f32 = out.as<float>();
  uint16_t* out_bf16 =
      reinterpret_cast<uint16_t*>(reinterpret_cast<char*>(out.data()) + out_layout.normed_at());
  if (output == Output::kLastLogits) {
    cuda::rmsnorm(x, final_rows, w<float>(output_norm), c.rms_norm_eps, out_bf16, nullptr, rows, d,
                  stream);
    gemm->linear(out_bf16, d, w<uint16_t>(lm_head), d, out_f32, c.vocab_size, cuda::OutType::kF32,
                 rows, c.vocab_size, d, cuda::Epilogue::kNone, nullptr, stream);
  } else if (output == Output::kTokenLogProbs) {
    cuda::rmsnorm(x, nullptr, w<float>(output_norm), c.rms_norm_eps, out_bf16, nullptr, rows, d,
                  stream);
    const int slice = static_cast<int>(logits.size() / (static_cast<size_t>(c.vocab_size) * 4));
    for (int r0 = 0; r0 < rows; r0 += slice) {
      const int n = std::min(slice, rows - r0);
      gemm->linear(out_bf16 + static_cast<size_t>(r0) * d, d, w<uint16_t>(lm_head), d,
                   logits.as<float>(), c.vocab_size, cuda::OutType::kF32, n, c.vocab_size, d,
                   cuda::Epilogue::kNone, nullptr, stream);
      cuda::token_log_probs(logits.as<float>(), n, c.vocab_size, targets + r0, out_f32 + r0,
                            stream);
    }
  } else {
    cuda::rmsnorm(x, out_layout.every_token ? nullptr : final_rows, w<float>(output_norm),
                  c.rms_norm_eps, out_bf16, out_f32, rows, d, stream);
  }
  cuda::check(cudaMemcpyAsync(host_out.data(), out_f32, out_layout.result_bytes(),
                              cudaMemcpyDeviceToHost, stream),
              "cudaMemcpyAsync (results)");
}

}  // namespace attncache
