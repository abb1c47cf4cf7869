#include "attncache/model/bert_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/gemm.h"
#include "attncache/kernels/cuda/ops.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/cuda_forward.h"
#include "attncache/model/safetensors.h"
#include "core/dtype.h"
#include "core/error.h"

namespace attncache {
namespace {

using cuda_forward::align_up;
using cuda_forward::kGemmWorkspace;
using cuda_forward::kMiB;

class TensorReader {
 public:
  explicit TensorReader(const std::string& path) : file_(SafeTensors::open(path)) {
    if (file_.find("embeddings.word_embeddings.weight") == nullptr &&
        file_.find("bert.embeddings.word_embeddings.weight") != nullptr) {
      prefix_ = "bert.";
    }
  }
  // The tensor as fp32, checked against the shape config.json implies (as BertModel does).
  std::vector<float> get(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = file_.get_float(prefix_ + name, shape);
    std::vector<float> out(static_cast<size_t>(t.numel()));
    core::convert_to_f32(t.dtype, t.data, out.size(), out.data());
    return out;
  }

 private:
  SafeTensors file_;
  std::string prefix_;
};

struct LayerWeights {
  size_t qkv_w, qkv_b, out_w, out_b, ln1_g, ln1_b, inter_w, inter_b, ffn_w, ffn_b, ln2_g, ln2_b;
};

// Device bytes of the activations for a batch of `tokens` tokens.
size_t activation_bytes_for(const BertConfig& c, size_t tokens) {
  const size_t d = c.hidden_size, ff = c.intermediate_size;
  const size_t per_token = d * 4        // the last layer's output, fp32 (pooling reads it)
                           + d * 2      // the residual stream, bf16 (GEMM input)
                           + 3 * d * 2  // qkv
                           + d * 2      // attention context
                           + d * 2      // GEMM output + bias + residual, before LayerNorm
                           + ff * 2;    // MLP intermediate
  return tokens * per_token;
}

}  // namespace

struct CudaBertEncoder::Impl {
  ModelConfig config;
  CudaEncoderOptions options;
  std::string device;
  cudaStream_t stream = nullptr;

  cuda::DeviceBuffer weights;
  size_t word = 0, pos = 0, type0 = 0, emb_g = 0, emb_b = 0;
  std::vector<LayerWeights> layers;
  std::unique_ptr<cuda::Gemm> gemm;

  // Activations, sized for `capacity` tokens.
  size_t capacity = 0;
  cuda::DeviceBuffer hidden, hidden_bf16, qkv, ctx, tmp, inter;
  // The per-batch tables (ids, positions, sequences, work items, map slots): pinned host
  // staging and the device copy, uploaded with one copy per batch.
  cuda::DeviceBuffer meta, pooled;
  cuda_forward::PinnedBuffer host_meta, host_out;
  cuda_forward::GraphCache graphs;
  cuda_forward::PhaseTimer timer;
  CudaProfile totals;

  void mark(cuda_forward::PhaseTimer::Phase next) { timer.mark(next, stream); }

  ~Impl() {
    graphs.clear();
    gemm.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  template <typename T>
  const T* w(size_t offset) const {
    return reinterpret_cast<const T*>(static_cast<const char*>(weights.data()) + offset);
  }

  void check_budget(size_t more, const char* what) const {
    if (options.memory_limit == 0) return;
    const size_t used =
        weights.size() + kGemmWorkspace + activation_bytes_for(config.bert, capacity);
    if (used + more > options.memory_limit) {
      core::throw_bad_input("the GPU encoder's memory limit (", options.memory_limit / kMiB,
                            " MiB) is too small for ", what, " (", more / kMiB, " MiB more)");
    }
  }

  void reserve_tokens(size_t tokens) {
    if (tokens <= capacity) return;
    const BertConfig& c = config.bert;
    const size_t d = c.hidden_size, ff = c.intermediate_size;
    check_budget(activation_bytes_for(c, tokens) - activation_bytes_for(c, capacity),
                 "the activations of a larger batch");
    graphs.clear();
    hidden = {}, hidden_bf16 = {}, qkv = {}, ctx = {}, tmp = {}, inter = {};
    capacity = 0;
    hidden = cuda::DeviceBuffer(tokens * d * 4, "activations (hidden states)");
    hidden_bf16 = cuda::DeviceBuffer(tokens * d * 2, "activations (hidden states, bf16)");
    qkv = cuda::DeviceBuffer(tokens * 3 * d * 2, "activations (Q, K, V)");
    ctx = cuda::DeviceBuffer(tokens * d * 2, "activations (attention output)");
    tmp = cuda::DeviceBuffer(tokens * d * 2, "activations (projection output)");
    inter = cuda::DeviceBuffer(tokens * ff * 2, "activations (MLP)");
    capacity = tokens;
  }

  void reserve_meta(size_t meta_bytes, size_t out_bytes) {
    if (meta_bytes > meta.size()) {
      graphs.clear();
      meta = cuda::DeviceBuffer(std::max(meta_bytes, 2 * meta.size()), "batch tables");
    }
    if (host_meta.reserve(meta_bytes, "batch tables")) graphs.clear();
    if (host_out.reserve(out_bytes, "results") || out_bytes > pooled.size()) {
      graphs.clear();
      pooled = cuda::DeviceBuffer(host_out.size(), "pooled embeddings");
    }
  }

  std::vector<float> run(const std::vector<std::vector<int32_t>>& batch, const DeviceMapPlan* maps,
                         bool pool_output);
  void enqueue(const std::vector<int>& lengths, int total, int num_items,
               const std::vector<DeviceMapPlan::Slot>* slots, bool pool_output,
               const size_t (&at)[6], size_t meta_bytes);
};

CudaBertEncoder::CudaBertEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaBertEncoder::~CudaBertEncoder() = default;

const ModelConfig& CudaBertEncoder::config() const { return impl_->config; }
const std::string& CudaBertEncoder::device_description() const { return impl_->device; }
size_t CudaBertEncoder::weight_bytes() const { return impl_->weights.size(); }
size_t CudaBertEncoder::activation_bytes() const {
  return activation_bytes_for(impl_->config.bert, impl_->capacity);
}
const CudaProfile& CudaBertEncoder::profile() const { return impl_->totals; }
void CudaBertEncoder::reset_profile() { impl_->totals = {}; }
size_t CudaBertEncoder::map_bytes(int n_tokens, core::DType dtype) const {
  if (dtype == core::DType::kP4) core::throw_bad_input("P4 maps are for causal decoders only");
  return static_cast<size_t>(impl_->config.bert.num_heads) * n_tokens * n_tokens *
         core::dtype_size(dtype);
}

std::unique_ptr<CudaBertEncoder> CudaBertEncoder::create(const ModelConfig& config,
                                                         const CudaEncoderOptions& options) {
  const BertConfig& c = config.bert;
  if (!cuda::attention_supports_head_dim(c.head_dim())) {
    core::throw_bad_input("the GPU encoder supports head sizes 16, 32 and 64, not ", c.head_dim());
  }
  if (!cuda::layernorm_supports(c.hidden_size)) {
    core::throw_bad_input("the GPU encoder does not support hidden size ", c.hidden_size,
                          " (128, 256, 384, 512, 768 or 1024)");
  }
  if (options.max_batch_tokens <= 0) core::throw_bad_input("max_batch_tokens must be positive");

  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->options = options;
  impl->device = cuda_forward::open_device(options.device);

  // The weights laid out on the host (measured first: the memory check below needs their size),
  // then converted into one image for the upload.
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  TensorReader file((std::filesystem::path(config.dir) / "model.safetensors").string());
  auto lay_out = [&](cuda_forward::WeightImage& image) {
    impl->word = image.add_f32(file.get("embeddings.word_embeddings.weight", {c.vocab_size, d}));
    impl->pos = image.add_f32(
        file.get("embeddings.position_embeddings.weight", {c.max_position_embeddings, d}));
    std::vector<float> types =
        file.get("embeddings.token_type_embeddings.weight", {c.type_vocab_size, d});
    types.resize(d);  // inputs are single-segment: type 0 only
    impl->type0 = image.add_f32(types);
    impl->emb_g = image.add_f32(file.get("embeddings.LayerNorm.weight", {d}));
    impl->emb_b = image.add_f32(file.get("embeddings.LayerNorm.bias", {d}));
    impl->layers.clear();
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = "encoder.layer." + std::to_string(i) + ".";
      LayerWeights l{};
      std::vector<float> qkv_w, qkv_b;
      for (const char* name : {"query", "key", "value"}) {
        auto wt = file.get(p + "attention.self." + name + ".weight", {d, d});
        auto bs = file.get(p + "attention.self." + name + ".bias", {d});
        qkv_w.insert(qkv_w.end(), wt.begin(), wt.end());
        qkv_b.insert(qkv_b.end(), bs.begin(), bs.end());
      }
      l.qkv_w = image.add_bf16(qkv_w);
      l.qkv_b = image.add_bf16(qkv_b);  // bias of a bf16 output: bf16 (cuBLASLt epilogue)
      l.out_w = image.add_bf16(file.get(p + "attention.output.dense.weight", {d, d}));
      l.out_b = image.add_bf16(file.get(p + "attention.output.dense.bias", {d}));
      l.ln1_g = image.add_f32(file.get(p + "attention.output.LayerNorm.weight", {d}));
      l.ln1_b = image.add_f32(file.get(p + "attention.output.LayerNorm.bias", {d}));
      l.inter_w = image.add_bf16(file.get(p + "intermediate.dense.weight", {ff, d}));
      l.inter_b = image.add_bf16(file.get(p + "intermediate.dense.bias", {ff}));
      l.ffn_w = image.add_bf16(file.get(p + "output.dense.weight", {d, ff}));
      l.ffn_b = image.add_bf16(file.get(p + "output.dense.bias", {d}));
      l.ln2_g = image.add_f32(file.get(p + "output.LayerNorm.weight", {d}));
      l.ln2_b = image.add_f32(file.get(p + "output.LayerNorm.bias", {d}));
      impl->layers.push_back(l);
    }
  };
  cuda_forward::WeightImage measured;  // reads the file twice: 65 MB for MiniLM
  lay_out(measured);

  // Refuse up front, with the numbers, rather than fail in the middle of a batch.
  const size_t tokens = static_cast<size_t>(options.max_batch_tokens);
  const size_t weights = measured.size();
  const size_t activations = activation_bytes_for(c, tokens);
  cuda_forward::check_fits(options.device, impl->device, options.memory_limit, weights, activations,
                           tokens, "the encoder");

  cuda::check(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  impl->weights = cuda::DeviceBuffer(weights, "the model weights");
  cuda_forward::WeightImage image(weights);
  lay_out(image);
  impl->weights.upload(image.data(), weights);
  impl->gemm = std::make_unique<cuda::Gemm>(kGemmWorkspace);
  impl->reserve_tokens(tokens);
  return std::unique_ptr<CudaBertEncoder>(new CudaBertEncoder(std::move(impl)));
}

std::vector<float> CudaBertEncoder::embed(const std::vector<std::vector<int32_t>>& batch,
                                          const DeviceMapPlan* maps) {
  return impl_->run(batch, maps, true);
}

std::vector<float> CudaBertEncoder::encode(const std::vector<std::vector<int32_t>>& batch,
                                           const DeviceMapPlan* maps) {
  return impl_->run(batch, maps, false);
}

std::vector<float> CudaBertEncoder::Impl::run(const std::vector<std::vector<int32_t>>& batch,
                                              const DeviceMapPlan* maps, bool pool_output) {
  const BertConfig& c = config.bert;
  const int d = c.hidden_size;
  const int nseq = static_cast<int>(batch.size());
  if (nseq == 0) return {};
  std::vector<int> lengths(nseq);
  int total = 0, num_items = 0;
  cuda_forward::check_batch(batch, c.max_position_embeddings, c.vocab_size,
                            "the model takes at most ");
  for (int s = 0; s < nseq; ++s) {
    const int n = static_cast<int>(batch[s].size());
    lengths[s] = n;
    total += n;
    num_items += (n + cuda::kAttentionRows - 1) / cuda::kAttentionRows;
  }
  const std::vector<DeviceMapPlan::Slot>* slots = nullptr;
  if (maps != nullptr && !maps->slots.empty()) {
    if (maps->host_resident) {
      core::throw_bad_input("the GPU encoder reuses maps in device memory only");
    }
    cuda_forward::check_map_plan(*maps, c.num_layers, nseq, /*causal=*/false);
    slots = &maps->slots;
  }

  // Batch tables: ids, positions, offsets, lengths, items (int32), then the map slots.
  size_t at[6];
  at[0] = 0;                                    // ids
  at[1] = at[0] + align_up(total * 4, 16);      // positions
  at[2] = at[1] + align_up(total * 4, 16);      // offsets
  at[3] = at[2] + align_up(nseq * 4, 16);       // lengths
  at[4] = at[3] + align_up(nseq * 4, 16);       // items
  at[5] = at[4] + align_up(num_items * 8, 16);  // slots
  const size_t meta_bytes =
      at[5] + (slots != nullptr ? slots->size() * sizeof(cuda::DeviceMapSlot) : 0);
  reserve_tokens(static_cast<size_t>(total));
  const size_t out_floats = static_cast<size_t>(pool_output ? nseq : total) * d;
  reserve_meta(meta_bytes, out_floats * sizeof(float));

  char* h = static_cast<char*>(host_meta.data());
  int* ids = reinterpret_cast<int*>(h + at[0]);
  int* positions = reinterpret_cast<int*>(h + at[1]);
  int* offsets = reinterpret_cast<int*>(h + at[2]);
  int* lens = reinterpret_cast<int*>(h + at[3]);
  int* items = reinterpret_cast<int*>(h + at[4]);
  int row = 0, item = 0;
  for (int s = 0; s < nseq; ++s) {
    offsets[s] = row;
    lens[s] = lengths[s];
    for (int i = 0; i < lengths[s]; ++i, ++row) {
      ids[row] = batch[s][i];
      positions[row] = i;
    }
    for (int q = 0; q * cuda::kAttentionRows < lengths[s]; ++q, ++item) {
      items[2 * item] = s;
      items[2 * item + 1] = q;
    }
  }
  if (slots != nullptr) {
    auto* dev_slots = reinterpret_cast<cuda::DeviceMapSlot*>(h + at[5]);
    for (size_t i = 0; i < slots->size(); ++i) {
      dev_slots[i] = cuda_forward::device_slot((*slots)[i], (*slots)[i].stored);
    }
  }

  // The shape: everything that decides which kernels and copies run with which sizes.
  const uint64_t all_heads = cuda_forward::all_heads_mask(c.num_heads);
  std::vector<int64_t> key{pool_output ? 1 : 0, total};
  key.insert(key.end(), lengths.begin(), lengths.end());
  if (slots != nullptr) {
    for (const auto& slot : *slots) key.push_back(cuda_forward::slot_shape(slot, all_heads));
  }

  auto enqueue_batch = [&] {
    enqueue(lengths, total, num_items, slots, pool_output, at, meta_bytes);
  };
  const bool replayed = options.cuda_graphs && graphs.replay(key, stream, enqueue_batch);
  if (!replayed) {
    timer.start(options.profile);
    mark(cuda_forward::PhaseTimer::kOther);
    enqueue_batch();
    mark(cuda_forward::PhaseTimer::kOther);
    timer.stop();
  }
  cuda::check(cudaStreamSynchronize(stream), "the GPU encoder's batch");
  if (!replayed && options.profile) timer.collect(&totals);
  const float* out = static_cast<const float*>(host_out.data());
  return std::vector<float>(out, out + out_floats);
}

void CudaBertEncoder::Impl::enqueue(const std::vector<int>& lengths, int total, int num_items,
                                    const std::vector<DeviceMapPlan::Slot>* slots, bool pool_output,
                                    const size_t (&at)[6], size_t meta_bytes) {
  const BertConfig& c = config.bert;
  const int d = c.hidden_size, ff = c.intermediate_size;
  const int nseq = static_cast<int>(lengths.size());
  char* dm = static_cast<char*>(meta.data());
  const int* ids = reinterpret_cast<const int*>(dm + at[0]);
  const int* positions = reinterpret_cast<const int*>(dm + at[1]);
  const int* offsets = reinterpret_cast<const int*>(dm + at[2]);
  const int* lens = reinterpret_cast<const int*>(dm + at[3]);
  const int* items = reinterpret_cast<const int*>(dm + at[4]);
  const auto* dev_slots = reinterpret_cast<const cuda::DeviceMapSlot*>(dm + at[5]);
  cuda::check(
      cudaMemcpyAsync(meta.data(), host_meta.data(), meta_bytes, cudaMemcpyHostToDevice, stream),
      "cudaMemcpyAsync (batch tables)");

  float* hid = hidden.as<float>();
  uint16_t* hid16 = hidden_bf16.as<uint16_t>();
  uint16_t* q = qkv.as<uint16_t>();
  cuda::embed_layernorm(ids, positions, w<float>(word), w<float>(pos), w<float>(type0),
                        w<float>(emb_g), w<float>(emb_b), c.layer_norm_eps, hid16, nullptr, total,
                        d, stream);
  const uint64_t all_heads = cuda_forward::all_heads_mask(c.num_heads);
  std::vector<char> v_only;
  std::vector<int> first_row(nseq);
  for (int s = 0, r = 0; s < nseq; r += lengths[s], ++s) first_row[s] = r;

  for (int li = 0; li < c.num_layers; ++li) {
    const LayerWeights& l = layers[li];
    const cuda_forward::LayerReuse reuse =
        cuda_forward::layer_reuse(slots, li, nseq, all_heads, &v_only);
    // One projection per run of sequences that agree on V-only: [Q K V] for the others.
    mark(cuda_forward::PhaseTimer::kQkv);
    for (int s0 = 0; s0 < nseq;) {
      int s1 = s0 + 1;
      while (s1 < nseq && v_only[s1] == v_only[s0]) ++s1;
      const int first = first_row[s0];
      const int rows = first_row[s1 - 1] + lengths[s1 - 1] - first;
      const int skip = v_only[s0] ? 2 * d : 0;
      gemm->linear(hid16 + static_cast<size_t>(first) * d, d,
                   w<uint16_t>(l.qkv_w) + static_cast<size_t>(skip) * d, d,
                   q + static_cast<size_t>(first) * 3 * d + skip, 3 * d, cuda::OutType::kBF16, rows,
                   3 * d - skip, d, cuda::Epilogue::kBias, w<uint16_t>(l.qkv_b) + skip, stream);
      s0 = s1;
    }
    cuda::AttentionArgs args;
    args.qkv = q;
    args.ctx = ctx.data();
    args.seq_offset = offsets;
    args.seq_len = lens;
    args.items = items;
    args.num_items = num_items;
    args.num_heads = c.num_heads;
    args.head_dim = c.head_dim();
    args.maps = slots != nullptr ? dev_slots + static_cast<size_t>(li) * nseq : nullptr;
    mark(cuda_forward::PhaseTimer::kAttention);
    if (reuse.any_exact) cuda::attention_exact(args, reuse.any_record, stream);
    cuda_forward::attention_reuse(args, reuse, stream);

    // Output projection: tmp = ctx·Woᵀ + bo + residual, then LayerNorm into the residual stream.
    mark(cuda_forward::PhaseTimer::kGemm);
    gemm->linear(ctx.data(), d, w<uint16_t>(l.out_w), d, tmp.data(), d, cuda::OutType::kBF16, total,
                 d, d, cuda::Epilogue::kBias, w<uint16_t>(l.out_b), stream, hid16);
    mark(cuda_forward::PhaseTimer::kOther);
    cuda::layernorm(tmp.data(), w<float>(l.ln1_g), w<float>(l.ln1_b), c.layer_norm_eps, hid16,
                    nullptr, total, d, stream);
    mark(cuda_forward::PhaseTimer::kGemm);
    if (options.exact_gelu) {
      gemm->linear(hid16, d, w<uint16_t>(l.inter_w), d, inter.data(), ff, cuda::OutType::kBF16,
                   total, ff, d, cuda::Epilogue::kBias, w<uint16_t>(l.inter_b), stream);
      cuda::gelu_bf16(inter.data(), static_cast<size_t>(total) * ff, stream);
    } else {
      gemm->linear(hid16, d, w<uint16_t>(l.inter_w), d, inter.data(), ff, cuda::OutType::kBF16,
                   total, ff, d, cuda::Epilogue::kGeluBias, w<uint16_t>(l.inter_b), stream);
    }
    gemm->linear(inter.data(), ff, w<uint16_t>(l.ffn_w), ff, tmp.data(), d, cuda::OutType::kBF16,
                 total, d, ff, cuda::Epilogue::kBias, w<uint16_t>(l.ffn_b), stream, hid16);
    mark(cuda_forward::PhaseTimer::kOther);
    // The last layer's output also in fp32, for pooling and encode().
    const bool last = li + 1 == c.num_layers;
    cuda::layernorm(tmp.data(), w<float>(l.ln2_g), w<float>(l.ln2_b), c.layer_norm_eps, hid16,
                    last ? hid : nullptr, total, d, stream);
  }
  if (pool_output) {
    cuda::pool(hid, offsets, lens, nseq, *std::max_element(lengths.begin(), lengths.end()), d,
               config.sentence.pooling == Pooling::kCls, config.sentence.normalize,
               pooled.as<float>(), stream);
    cuda::check(cudaMemcpyAsync(host_out.data(), pooled.data(), static_cast<size_t>(nseq) * d * 4,
                                cudaMemcpyDeviceToHost, stream),
                "cudaMemcpyAsync (embeddings)");
  } else {
    cuda::check(cudaMemcpyAsync(host_out.data(), hid, static_cast<size_t>(total) * d * 4,
                                cudaMemcpyDeviceToHost, stream),
                "cudaMemcpyAsync (hidden states)");
  }
}

}  // namespace attncache
