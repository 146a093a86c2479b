#!/usr/bin/env python3
"""Generate a family of llama-shaped models: a base and N fine-tunes of it.

Each model is a Hugging Face folder (config.json, tokenizer files,
model.safetensors or shards). Tensors are generated and written one at a
time, so a family of multi-GB models never sits in memory. Fine-tune i is
base + noise; the base tensor is regenerated from its seed, not stored.

  make_family.py OUT_DIR --size 50MB --fine-tunes 3 [--dtype bf16] [--shards N]
"""
import argparse
import json
import os
import struct
import zlib

import numpy as np

NBYTES = {"bf16": 2, "f16": 2, "f32": 4}
ST_DTYPE = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
TORCH = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


def parse_size(s):
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "": 1}
    s = s.strip().upper()
    for u in ("KB", "MB", "GB", ""):
        if s.endswith(u) and (u or s.isdigit()):
            return int(float(s[: len(s) - len(u)] if u else s) * units[u])
    raise SystemExit(f"bad size {s!r}")


def shape_plan(target_bytes, dtype):
    """Layer sizes that add up to about target_bytes."""
    params = target_bytes / NBYTES[dtype]
    hidden = 2048 if params > 3e8 else (512 if params > 5e6 else 128)
    inter, vocab = hidden * 11 // 4, 32000 if params > 3e8 else 4096
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    layers = max(1, round((params - 2 * vocab * hidden) / per_layer))
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (hidden,)),
                   (p + "self_attn.q_proj.weight", (hidden, hidden)),
                   (p + "self_attn.k_proj.weight", (hidden, hidden)),
                   (p + "self_attn.v_proj.weight", (hidden, hidden)),
                   (p + "self_attn.o_proj.weight", (hidden, hidden)),
                   (p + "post_attention_layernorm.weight", (hidden,)),
                   (p + "mlp.gate_proj.weight", (inter, hidden)),
                   (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter))]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
              "num_attention_heads": max(1, hidden // 64), "vocab_size": vocab,
              "tie_word_embeddings": False, "torch_dtype": TORCH[dtype]}
    return shapes, config


def encode(x, dtype):
    if dtype == "f32":
        return x.astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    u = x.astype(np.float32).view(np.uint32)  # bf16, round to nearest even
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def tensor(name, shape, model, noise):
    seed = zlib.crc32(name.encode())
    base = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    base *= np.float32(0.02)
    if name.endswith("layernorm.weight") or name == "model.norm.weight":
        base += np.float32(1.0)
    if model > 0:
        delta = np.random.default_rng([seed, model]).standard_normal(shape, dtype=np.float32)
        base += delta * np.float32(noise)
    return base


def write_file(path, entries, dtype, model, noise):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in entries:
        n = int(np.prod(shape)) * NBYTES[dtype]
        header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(shape),
                        "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, shape in entries:
            f.write(encode(tensor(name, shape, model, noise), dtype).tobytes())
    return off


def write_model(folder, shapes, config, dtype, model, noise, shards):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 2048, "tokenizer_class": "LlamaTokenizer"}, f)
    if shards <= 1:
        write_file(os.path.join(folder, "model.safetensors"), shapes, dtype, model, noise)
        return
    per = -(-len(shapes) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        part = shapes[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        total += write_file(os.path.join(folder, fname), part, dtype, model, noise)
        weight_map.update({name: fname for name, _ in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", default="50MB", help="bytes per model, e.g. 50MB, 2GB")
    ap.add_argument("--fine-tunes", type=int, default=3)
    ap.add_argument("--dtype", choices=sorted(NBYTES), default="bf16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.002)
    a = ap.parse_args()
    shapes, config = shape_plan(parse_size(a.size), a.dtype)
    for m in range(a.fine_tunes + 1):
        name = "base" if m == 0 else f"ft{m}"
        write_model(os.path.join(a.out, name), shapes, config, a.dtype, m, a.noise, a.shards)
        print(f"wrote {os.path.join(a.out, name)}", flush=True)


if __name__ == "__main__":
    main()
