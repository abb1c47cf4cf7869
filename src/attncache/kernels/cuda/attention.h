// Multi-head self-attention on the GPU over variable-length sequences packed without padding,
// bidirectional (BERT) or causal with grouped-query heads (Llama-family decoders). bf16 in and
// out, fp32 accumulation, tensor cores: Hopper's warpgroup wgmma for head sizes 64 and 128 where
// the sm_90a image is loaded (not while recording maps), else mma.sync m16n8k16.
//
// Exact path: a FlashAttention-2-style forward. One CTA per (sequence, head, block of 64 query
// rows, or 128 with `wide_items`); four warps of 16 (or 32) rows each; keys and values stream
// through shared memory in blocks of 64 with an online softmax, so P never reaches device memory.
// With `record`, a second pass over the keys writes the normalized P (bf16, H×N×N per sequence) for
// the sequences that ask.
//
// Causal maps (stored and recorded) are block triangles, not N×N squares: per head, the 64×64
// tiles (row block rb, key block kb ≤ rb) in the order (0,0), (1,0), (1,1), (2,0)…, each row-major
// with zeros above the diagonal and past N. The zero triangle is never stored, read or multiplied,
// and every tile is 16-byte aligned for cp.async, which a packed triangle's rows are not.
//
// Reuse path: for heads whose maps are stored (H×N×N per sequence, a per-head mask), ctx = P·V
// straight from the stored maps: no Q, no K, no QKᵀ, no softmax. The exact kernel skips those
// heads; the two kernels together cover every head of every sequence. Maps are bf16, P8 (one
// byte, q = round(255·√p), the map database's compact format) or FP8 (one byte, fp8 e4m3 of
// 256·p, decoded by Hopper's cvt instruction): the one-byte formats halve the bytes the reuse
// kernel streams, which is what bounds it. P4 (causal maps only) halves them again: a 4-bit code
// q = round(15·√(p / m)) relative to the row's largest probability m, and one fp32 scale per
// row, 1 / Σ q², that the kernel applies to the output row after P·V, so each decoded row sums
// to 1 (layout at p4_map_bytes).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace attncache::cuda {

constexpr int kAttentionRows = 64;  // query rows per CTA (and keys per block)

enum class MapFormat : int { kBF16 = 0, kP8 = 1, kFP8 = 2, kP4 = 3 };
constexpr int kMapFormats = 4;

// One sequence's maps at one layer, in device memory.
struct DeviceMapSlot {
  // H maps (N×N each, or block triangles when causal) to reuse for the heads in `heads`
  // (16-byte aligned)
  const void* stored = nullptr;
  void* record = nullptr;  // bf16 H maps, laid out as `stored`, that receive the exact P, or null
  uint64_t heads = ~0ull;  // bit h: head h reuses `stored`
  MapFormat format = MapFormat::kBF16;  // of `stored`
};

struct AttentionArgs {
  // bf16 [T × (H + 2·H_kv)·dh]: rows of (q | k | v), heads contiguous in each
  const void* qkv = nullptr;
  void* ctx = nullptr;              // bf16 [T × H·dh]
  const int* seq_offset = nullptr;  // [B] first row of each sequence (device)
  const int* seq_len = nullptr;     // [B] tokens of each sequence (device)
  const int* items = nullptr;       // [2·num_items] (sequence, query block) pairs (device)
  int num_items = 0;
  // Optional: (sequence, block of 128 query rows) pairs. With them the exact kernel, when it
  // does not record, and the reuse kernel run 128 query rows per CTA (two wgmma row tiles, or
  // 32 rows per warp with mma.sync): each key/value (and map) tile they load serves twice the
  // rows. Worth it when there are enough blocks to fill the GPU.
  const int* wide_items = nullptr;
  int num_wide_items = 0;
  int num_heads = 0;
  int head_dim = 0;
  // Grouped-query attention: query head h reads key/value head h / (num_heads / num_kv_heads).
  // 0: num_heads (multi-head attention).
  int num_kv_heads = 0;
  bool causal = false;  // query i sees keys 0..i; maps are block triangles
  // Reuse with 64-row blocks (no wide_items), causal, head size 64 or 128: one CTA per query
  // block and 2-4 query heads that share a KV head (all of them, or as many as divide their
  // number; reuse_heads_per_cta) reads each value tile once for all of them. Set only where
  // attention_uses_wgmma() (other images trap); ignored where it does not apply.
  bool group_heads = false;
  // The grouped kernel's CTAs: 0, one per (query block, head group) unit; n > 0, at most n, each
  // taking units in turn (in rounds of n, alternately forward and backward) so its buffer ring
  // runs on from one unit into the next. The number of SMs makes it persistent (a CTA fills an
  // SM).
  int grouped_ctas = 0;
  // The grouped kernel's unit order: bands of this many items (0: all of them), the first
  // items' band first; within a band, head group by head group, the items in order within each
  // (1: item by item, every head group of an item before the next item's). With the items
  // longest first, item by item is longest first; head group by head group keeps the value
  // tiles that the CTAs at work at once read to few KV heads (L2).
  int grouped_band_items = 0;
  const DeviceMapSlot* maps = nullptr;  // [B] this layer's slots (device), or null
};

// Head sizes the kernels are built for: 16, 32, 64, 128.
bool attention_supports_head_dim(int head_dim);

// Whether the image of the kernels that device 0 loaded runs the exact (not recording) and reuse
// kernels for head sizes 64 and 128 with Hopper's wgmma (the sm_90a image) rather than mma.sync.
// Runs a kernel and waits for it: not while a stream is being captured.
bool attention_uses_wgmma();

// Elements of one head's causal map of an n-token sequence: R(R+1)/2 tiles of 64×64, R = ⌈n/64⌉.
size_t causal_map_elements(int n);
// One head's causal map, packed lower triangle (row i holds keys 0..i, rows back to back, as the
// CPU engine and the map database store them) → block triangle. `bytes` per value (1 or 2).
void causal_map_to_tiles(const void* packed, int n, int bytes, void* tiles);
// The inverse: block triangle → packed lower triangle (n(n+1)/2 values).
void causal_map_from_tiles(const void* tiles, int n, int bytes, void* packed);

// Bytes of one sequence's P4 maps (`heads` causal maps of n tokens): first every head's block
// triangle of 64×64 codes, 32 bytes a row, then every head's R·64 row scales (fp32, R = ⌈n/64⌉;
// rows past n scale 0). Within a tile row, key k's code is nibble (k >> 1) & 1 (low first) of
// byte 2·(k / 4) + (k & 1): a byte pair holds keys 4g … 4g + 3 as (4g | 4g+2, 4g+1 | 4g+3), so
// the decoder spreads a pair into two bf16 pairs with one mask each.
size_t p4_map_bytes(int n, int heads);
// The P4 copy of `heads` causal maps given as packed lower triangles of fp32 probabilities
// (head after head, as the CPU engine records them), on the host: the reference encoder.
void causal_maps_to_p4(const float* packed, int n, int heads, void* p4);
// One layer of P4 rows as the map database stores them (attncache/kernels/stored_maps.h) → the
// same codes and scales as P4 block triangles: on the host, and on the device (the map cache's
// conversion after the copy).
void p4_rows_to_tiles(const void* rows, int n, int heads, void* p4);
void p4_rows_to_tiles(const void* rows, int n, int heads, void* p4, cudaStream_t stream);

// One layer of `heads` maps as the map database stores them (attncache/kernels/stored_maps.h),
// `bytes` (1 or 2) a value, causal ones as packed lower triangles → the layout the reuse kernels
// read: block triangles when causal, and with `fp16` the values (fp16) as bf16, rounded to
// nearest even as core::convert_from_f32 rounds. On the device (the map cache's conversion after
// its copy); causal_map_to_tiles is the host's.
void stored_maps_to_tiles(const void* stored, int n, int heads, bool causal, int bytes, bool fp16,
                          void* out, cudaStream_t stream);

// Exact attention for every head not reused; with `record`, also writes P where a slot asks.
void attention_exact(const AttentionArgs& args, bool record, cudaStream_t stream);
// Query heads per CTA of attention_reuse with these arguments when it runs the grouped kernel
// (group_heads), else 0.
int reuse_heads_per_cta(const AttentionArgs& args);
// AttentionArgs::grouped_band_items that splits `num_items` items into four bands, the decoder's
// order for the grouped kernel.
inline int grouped_four_bands(int num_items) { return (num_items + 3) / 4; }
// P·V from stored maps for the reused heads whose maps are in `format` (args.maps must be set).
void attention_reuse(const AttentionArgs& args, MapFormat format, cudaStream_t stream);

// P8 copies of bf16 probabilities: q = round(255·√clamp(p, 0, 1)), as core::convert_from_f32.
void maps_to_p8(const void* bf16, void* p8, size_t count, cudaStream_t stream);
// FP8 copies: the fp8 e4m3 encoding of 256·p (saturating), as core::convert_from_f32.
void maps_to_fp8(const void* bf16, void* fp8, size_t count, cudaStream_t stream);
// P4 copies of one sequence's `heads` causal maps (block triangles) in format `from` (bf16, P8
// or FP8): what causal_maps_to_p4 makes of the values they decode to.
void maps_to_p4(const void* tiles, MapFormat from, int n, int heads, void* p4, cudaStream_t stream);

}  // namespace attncache::cuda
