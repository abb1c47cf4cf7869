#!/usr/bin/env python3
"""Golden values for the GGUF reader tests, from the reference implementation: the `gguf` Python
package (ggml's own gguf-py: GGUFWriter, gguf.quants, GGUFReader).

    python3 -m pip install gguf==0.19.0 numpy
    python3 tests/data/gguf/make_goldens.py

Writes into tests/data/gguf/:
  types.gguf             a small GGUF v3 file, alignment 64: metadata of every value type (nested
                         arrays included) and one tensor per element type the engine dequantizes.
                         F32/F16/BF16 and Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 are quantized by gguf.quants
                         from seeded normal data; gguf-py cannot quantize the k-quants, so the
                         Q2_K..Q6_K tensors are seeded random blocks (random bytes with finite fp16
                         scales), which are valid encodings all the same.
  types.f32              gguf.quants.dequantize of every tensor, little-endian float32, in file order
  types.json             each tensor's name, type, dims (as stored) and offset into types.f32, and
                         the metadata the file holds
and, when models/SmolLM2-135M-Instruct/ is present (scripts/fetch-models.sh), reference values of
a few blocks of real tensors:
  SmolLM2-135M-Instruct.blocks.json
"""
import hashlib
import importlib.metadata
import json
import pathlib

import gguf
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
T = gguf.GGMLQuantizationType
V = gguf.GGUFValueType
SEED = 20260506

QUANTIZED = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
RANDOM_BLOCKS = {  # type: byte offsets of the fp16 scales inside a block
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def write_types(rng):
    path = HERE / "types.gguf"
    w = gguf.GGUFWriter(str(path), "test")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62) - 3)
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", -1.0 / 3.0)
    w.add_bool("test.true", True)
    w.add_bool("test.false", False)
    w.add_string("test.string", "héllo, ✓ GGUF")
    w.add_array("test.strings", ["a", "", "ümlaut", "三"])
    w.add_key_value("test.i16s", [-1, 2, -3], V.ARRAY, sub_type=V.INT16)
    w.add_key_value("test.u64s", [0, 2**64 - 1], V.ARRAY, sub_type=V.UINT64)
    w.add_array("test.f32s", [1.5, -2.25])
    w.add_array("test.nested", [[1, 2], [3]])

    tensors = []
    for i, qtype in enumerate(QUANTIZED):
        shape = (2, 96) if qtype in (T.F32, T.F16, T.BF16) else (3, 64)
        data = rng.standard_normal(shape).astype(np.float32)
        data[0, 0] = 0.0  # an exact zero and a constant-ish run exercise the edge cases
        data[1, :32] = 0.5
        q = gguf.quants.quantize(data, qtype)
        tensors.append((f"t.{qtype.name.lower()}", qtype, q, shape))
    for qtype, scale_offsets in RANDOM_BLOCKS.items():
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = 2
        raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for off in scale_offsets:
            scales = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
            raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
        tensors.append((f"t.{qtype.name.lower()}", qtype, raw.reshape(1, -1),
                        (1, n_blocks * block_size)))
    # A 3-D tensor, to check that dims are kept in storage order.
    cube = rng.standard_normal((2, 3, 32)).astype(np.float32)
    tensors.append(("t.cube_q8_0", T.Q8_0, gguf.quants.quantize(cube, T.Q8_0), cube.shape))

    for name, qtype, q, shape in tensors:
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, q)
        else:
            w.add_tensor(name, q, raw_dtype=qtype)  # uint8 blocks; the writer derives the shape
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = gguf.GGUFReader(str(path))
    out = []
    manifest = []
    offset = 0
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        manifest.append({"name": t.name, "type": t.tensor_type.name,
                         "dims": [int(d) for d in t.shape], "offset": offset,
                         "count": int(values.size)})
        offset += values.size
        out.append(values)
    np.concatenate(out).astype("<f4").tofile(HERE / "types.f32")
    meta = {"version": 3, "alignment": 64, "gguf_py": importlib.metadata.version("gguf"),
            "numpy": np.__version__, "seed": SEED, "tensors": manifest}
    (HERE / "types.json").write_text(json.dumps(meta, indent=1) + "\n")


def write_model_blocks():
    name = "SmolLM2-135M-Instruct"
    path = ROOT / "models" / name / f"{name}.Q4_1.gguf"
    if not path.exists():
        print(f"skipping {name}: {path} is absent (scripts/fetch-models.sh {name})")
        return
    reader = gguf.GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    picks = [("token_embd.weight", [0, 1, 777 * 18 + 5]),  # Q8_0, 18 blocks per row of 576
             ("blk.0.attn_q.weight", [0, 1, 10367]),      # Q4_1, the last block
             ("blk.29.ffn_down.weight", [4321]),            # Q4_1
             ("blk.17.attn_v.weight", [100, 101]),          # Q4_1
             ("output_norm.weight", list(range(32)))]       # F32: first 32 values
    entries = []
    for tname, blocks in picks:
        t = by_name[tname]
        block_size, type_size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        for b in blocks:
            chunk = raw[b * type_size:(b + 1) * type_size]
            values = gguf.quants.dequantize(chunk, t.tensor_type).astype(np.float32).reshape(-1)
            entries.append({"tensor": tname, "type": t.tensor_type.name, "block": b,
                            "values": [float(v) for v in values]})
    fields = reader.fields
    meta = {"file": f"models/{name}/{name}.Q4_1.gguf",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "tensor_count": len(reader.tensors),
            "architecture": fields["general.architecture"].contents(),
            "block_count": int(fields["llama.block_count"].contents()),
            "embedding_length": int(fields["llama.embedding_length"].contents()),
            "vocab_size": len(fields["tokenizer.ggml.tokens"].data),
            }
    head = json.dumps(meta, indent=1)[:-2]  # one block per line below
    blocks = ",\n".join("  " + json.dumps(e) for e in entries)
    (HERE / f"{name}.blocks.json").write_text(f'{head},\n "blocks": [\n{blocks}\n ]\n}}\n')


def main():
    rng = np.random.default_rng(SEED)
    write_types(rng)
    write_model_blocks()


if __name__ == "__main__":
    main()
