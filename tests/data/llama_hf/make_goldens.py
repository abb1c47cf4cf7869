#!/usr/bin/env python3
"""Tiny Hugging Face decoder directories and their golden outputs from the reference
implementation (transformers 5.24 + tokenizers 0.23, torch CPU, fp32, eager attention).

    pip install -r scripts/reference/requirements.txt
    python3 tests/data/llama_hf/make_goldens.py

1. A byte-level BPE vocabulary of 768 tokens trained with `tokenizers` on tests/data/corpus.txt
   (special tokens <|endoftext|>, <|begin_of_text|>, <|im_start|>, <|im_end|>; one non-special
   added token "[[sep]]"), written as tokenizer.json in four forms that real models use:
     llama3/    Sequence[Split(Llama-3 regex), ByteLevel(use_regex=false)], ignore_merges,
                post-processor Sequence[ByteLevel, TemplateProcessing "<|begin_of_text|> $A"]
     smollm/    Sequence[Digits(individual), ByteLevel(use_regex=true)], post-processor
                ByteLevel; tokenizer_config.json add_bos_token=true (transformers then adds BOS)
     qwen2/     NFC normalizer, Sequence[Split(Qwen2 regex), ByteLevel(use_regex=false)]
     gpt2/      ByteLevel(use_regex=true) alone, TemplateProcessing "$A <|endoftext|>" (EOS);
                a tokenizer only, no model
2. Random tiny decoders (initializer_range 0.1; norm weights 1 + N(0, 0.1²) and biases N(0, 0.1²)
   so that neither is a no-op), saved with save_pretrained:
     llama3/  LlamaForCausalLM, hidden 64, 2 layers, 4 heads / 2 KV heads (head 16), FFN 128,
              rope llama3 (factor 8, low 1, high 4, original context 64; context 256), tied
              head (no lm_head.weight), fp32, one model.safetensors, config in transformers 5's
              form (rope_parameters)
     smollm/  LlamaForCausalLM, hidden 64, 2 layers, 4 heads / 1 KV head with head_dim 32
              (≠ hidden / heads), FFN 96, rope linear factor 2, base 100000, untied head,
              bf16, sharded (model-0000N-of-0000M.safetensors + index), config in the
              transformers 4 form (rope_theta + rope_scaling {"type": "linear"})
     qwen2/   Qwen2ForCausalLM (q/k/v biases), hidden 64, 2 layers, 4 heads / 2 KV heads, FFN 128,
              base 1e6, tied head, fp16, config with rope_theta and rope_scaling null
3. Goldens, from transformers loading each saved directory (weights upcast to fp32):
     <name>.goldens.json  per prompt: the ids (transformers' tokenizer with its special tokens,
                          cut to 64 tokens), at every position the top-1 next token, its margin
                          over the runner-up and log p(next id); the model's rotary inv_freq
     <name>.logits.f32    the last position's full logit row of every prompt (fp32 LE)
     tokenizer.goldens.json  per tokenizer form: ids (transformers, add_special_tokens=True) of
                          every 20th corpus line and of hand-picked edge texts
   Prompts: every 120th corpus line and one 240-token prompt of consecutive lines from 1000 (past
   the llama3 variant's original context of 64).
4. If models/SmolLM2-135M-Instruct-hf exists (scripts/reference/gguf_to_hf.py), transformers'
   ids of every 5th corpus line with its tokenizer: SmolLM2-135M-Instruct-hf.token_ids.txt.
"""
import json
import pathlib
import shutil

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent
LINES = (ROOT / "tests" / "data" / "corpus.txt").read_text(encoding="utf-8").split("\n")[:-1]
VOCAB = 768
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"]
PROMPT_TOKENS = 64
LONG_TOKENS = 240

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

EDGE_TEXTS = [
    "", " ", "Hello world", "Hello  world   ", " leading space", "trailing space ",
    "12345 and 3.14159, 1,000,000", "I'm, you'RE, we'll, they'D, IT'S", "line one\nline two\n\n",
    "\r\n\r\nwindows\r\n", "tabs\tand\t\tmore", "a\u00a0b\u3000c\u2028d", "emoji 👍🏽 and 🇩🇪!",
    "中文字符和English混合", "Привет, мир! Ёлка.", "e\u0301 and é; A\u030a and Å",
    "<|im_start|>user\nHi there<|im_end|>\n", "text<|endoftext|>more", "a [[sep]] b[[sep]]c",
    "<|begin_of_text|>twice?", "$$$ ### @@@ ---", "x" * 300, "ǅungla ﬁne ½ ⅷ",
]


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=SPECIALS[:2], show_progress=False)
    tok.train_from_iterator(LINES, trainer)
    tok.add_special_tokens(SPECIALS[2:])
    tok.add_tokens(["[[sep]]"])
    return tok.to_str()


def tokenizer_form(base, form):
    """The trained tokenizer with the pipeline of one real model family."""
    tok = Tokenizer.from_str(base)
    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<|begin_of_text|>")
    eos = tok.token_to_id("<|endoftext|>")
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"}
    if form == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
        tok.model.ignore_merges = True
    elif form == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config["add_bos_token"] = True
    elif form == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"bos_token": None, "eos_token": "<|endoftext|>"}
    elif form == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.post_processor = processors.TemplateProcessing(
            single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eos)])
    return tok, config


def save_tokenizer(tok, config, out):
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **config)
    fast.save_pretrained(out)
    # Check what was written loads back as the same pipeline through transformers.
    loaded = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in LINES[::97] + EDGE_TEXTS:
        want = raw.encode(text, add_special_tokens=False).ids
        got = loaded(text, add_special_tokens=False).input_ids
        assert got == want, (out, text, got, want)


def perturb(model, seed):
    """Norm weights and biases away from their initial 1 and 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def tiny_models(vocab):
    common = dict(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.1,
                  bos_token_id=1, eos_token_id=0)
    llama3 = LlamaConfig(**common, num_key_value_heads=2, intermediate_size=128,
                         tie_word_embeddings=True,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0,
                                          "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64})
    smollm = LlamaConfig(**common, num_key_value_heads=1, head_dim=32, intermediate_size=96,
                         tie_word_embeddings=False,
                         rope_parameters={"rope_type": "linear", "rope_theta": 100000.0,
                                          "factor": 2.0})
    qwen2 = Qwen2Config(**common, num_key_value_heads=2, intermediate_size=128,
                        tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    return [("llama3", LlamaForCausalLM, llama3, torch.float32, None),
            ("smollm", LlamaForCausalLM, smollm, torch.bfloat16, "100KB"),
            ("qwen2", Qwen2ForCausalLM, qwen2, torch.float16, None)]


def rewrite_config_as_transformers4(path):
    """rope_parameters → rope_theta + rope_scaling, as configs written before transformers 5."""
    config = json.loads(path.read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    kind = rope.pop("rope_type")
    config["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
    path.write_text(json.dumps(config, indent=2) + "\n")


def prompts_for(tok):
    prompts = []
    for i in range(0, len(LINES), 120):
        ids = tok(LINES[i]).input_ids[:PROMPT_TOKENS]
        prompts.append({"source": f"corpus line {i}", "ids": ids})
    ids, i = [], 1000
    while len(ids) < LONG_TOKENS:
        ids += tok(LINES[i] + "\n", add_special_tokens=False).input_ids
        i += 1
    prompts.append({"source": f"corpus lines 1000..{i - 1}", "ids": ids[:LONG_TOKENS]})
    return prompts


def model_goldens(name, out):
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    rows, results = [], []
    with torch.no_grad():
        for p in prompts_for(tok):
            logits = model(torch.tensor([p["ids"]])).logits[0].double()
            top2 = logits.topk(2, dim=-1)
            logp = torch.log_softmax(logits, dim=-1)
            nxt = torch.tensor(p["ids"][1:])
            results.append({
                "source": p["source"],
                "ids": p["ids"],
                "argmax": top2.indices[:, 0].tolist(),
                "margin": [round(float(m), 6) for m in (top2.values[:, 0] - top2.values[:, 1])],
                "log_probs": [float(v) for v in logp[:-1].gather(1, nxt[:, None])[:, 0]],
            })
            rows.append(logits[-1].float().numpy())
    np.stack(rows).astype("<f4").tofile(HERE / f"{name}.logits.f32")
    inv_freq = model.model.rotary_emb.inv_freq
    golden = {
        "model": f"tests/data/llama_hf/{name}",
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, fp32",
        "inv_freq": [float(v) for v in inv_freq],
        "prompts": results,
    }
    (HERE / f"{name}.goldens.json").write_text(json.dumps(golden) + "\n")
    return sum(len(p["ids"]) for p in results)


def main():
    torch.manual_seed(0)
    base = train_tokenizer()
    tok_goldens = {"reference": f"transformers {transformers.__version__}, "
                                f"tokenizers {tokenizers.__version__}",
                   "texts": EDGE_TEXTS + LINES[::20], "forms": {}}
    for form in ["llama3", "smollm", "qwen2", "gpt2"]:
        out = HERE / form
        shutil.rmtree(out, ignore_errors=True)
        tok, config = tokenizer_form(base, form)
        save_tokenizer(tok, config, out)
        loaded = AutoTokenizer.from_pretrained(out)
        tok_goldens["forms"][form] = [loaded(t).input_ids for t in tok_goldens["texts"]]
    (HERE / "tokenizer.goldens.json").write_text(json.dumps(tok_goldens) + "\n")

    for seed, (name, cls, config, dtype, shard) in enumerate(tiny_models(VOCAB)):
        torch.manual_seed(seed)
        model = cls(config).eval()
        perturb(model, seed)
        out = HERE / name
        model.to(dtype).save_pretrained(out, **({"max_shard_size": shard} if shard else {}))
        (out / "generation_config.json").unlink(missing_ok=True)
        if name != "llama3":
            rewrite_config_as_transformers4(out / "config.json")
        positions = model_goldens(name, out)
        print(f"{name}: {positions} positions, files {sorted(p.name for p in out.iterdir())}")

    hf = ROOT / "models" / "SmolLM2-135M-Instruct-hf"
    if hf.exists():
        tok = AutoTokenizer.from_pretrained(hf)
        with open(HERE / "SmolLM2-135M-Instruct-hf.token_ids.txt", "w") as f:
            for line in LINES[::5]:
                f.write(" ".join(map(str, tok(line, add_special_tokens=False).input_ids)) + "\n")
        print(f"{hf.name}: ids of {len(LINES[::5])} corpus lines")
    else:
        print(f"{hf} is absent (scripts/reference/gguf_to_hf.py): its token ids were not written")


if __name__ == "__main__":
    main()
