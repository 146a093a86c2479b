"""Independent safetensors I/O and model generation for the reference tests.

Written from the format's specification with numpy only; it shares no code
with ladle. bf16 is carried as uint16 bit patterns; rounding to bf16 uses
PyTorch, the reference users compare against.
"""
import json
import os
import struct

import numpy as np



def _torch():
    """PyTorch, imported when first needed (it takes a second to load, and
    the test evaluator, run once per candidate, never needs it)."""
    import torch
    return torch

NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
      "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_, "I8": np.int8,
      "F8_E4M3": np.uint8, "F8_E5M2": np.uint8, "I16": np.int16}


def to_f32(dtype, arr):
    """Stored values -> float32 (exact for every mergeable dtype but F64)."""
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def to_f64(dtype, arr):
    if dtype == "BF16":
        return to_f32(dtype, arr).astype(np.float64)
    return arr.astype(np.float64)


def round_to(dtype, x):
    """float32 (or float64 for F64) values -> stored values, round to nearest even."""
    if dtype == "F32":
        return x.astype(np.float32)
    if dtype == "F64":
        return x.astype(np.float64)
    if dtype == "F16":
        return x.astype(np.float32).astype(np.float16)
    if dtype == "BF16":
        torch = _torch()
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().view(np.uint16)
    raise ValueError(dtype)


def ulp(dtype, x):
    """The spacing of dtype at the (float64) values x: one unit in the last place."""
    mant, tiny = {"BF16": (7, 2.0**-133), "F16": (10, 2.0**-24), "F32": (23, 2.0**-149),
                  "F64": (52, 2.0**-1074)}[dtype]
    exp = np.floor(np.log2(np.maximum(np.abs(x), 1e-300)))
    return np.maximum(2.0 ** (exp - mant), tiny)


def write(path, tensors, metadata=None):
    """tensors: list of (name, dtype, array) in file order."""
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr).astype(NP[dtype], copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read(path):
    """-> (dict name -> (dtype, array), metadata, names in offset order)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    out = {}
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    end = 0
    for name in order:
        info = header[name]
        s, e = info["data_offsets"]
        assert s == end, f"{path}: {name} does not tile the data area"
        end = e
        arr = np.frombuffer(data[8 + n + s:8 + n + e], dtype=NP[info["dtype"]])
        out[name] = (info["dtype"], arr.reshape(info["shape"]))
    assert 8 + n + end == len(data), f"{path}: data area does not end at EOF"
    return out, meta, order


def load(ref):
    """A .safetensors file or HF folder (single or sharded) -> (tensors, order)."""
    if os.path.isfile(ref):
        t, _, order = read(ref)
        return t, order
    single = os.path.join(ref, "model.safetensors")
    if os.path.exists(single):
        t, _, order = read(single)
        return t, order
    with open(os.path.join(ref, "model.safetensors.index.json")) as f:
        index = json.load(f)
    tensors, order = {}, []
    for shard in sorted(set(index["weight_map"].values())):
        t, _, o = read(os.path.join(ref, shard))
        tensors.update(t)
        order += o
    assert set(tensors) == set(index["weight_map"])
    return tensors, order


def llama(rng, dtype="BF16", layers=2, hidden=64, inter=96, vocab=128, base=None,
          noise=0.02, tie=False, extra_int=True):
    """A llama-shaped model: list of (name, dtype, stored array). With base,
    a fine-tune: base + noise (in float32, rounded to dtype)."""
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (hidden,)),
                   (p + "self_attn.q_proj.weight", (hidden, hidden)),
                   (p + "self_attn.k_proj.weight", (hidden // 2, hidden)),
                   (p + "self_attn.v_proj.weight", (hidden // 2, hidden)),
                   (p + "self_attn.o_proj.weight", (hidden, hidden)),
                   (p + "post_attention_layernorm.weight", (hidden,)),
                   (p + "mlp.gate_proj.weight", (inter, hidden)),
                   (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter))]
    shapes.append(("model.norm.weight", (hidden,)))
    if not tie:
        shapes.append(("lm_head.weight", (vocab, hidden)))
    out = []
    base_map = {n: (d, a) for n, d, a in base} if base else {}
    for name, shape in shapes:
        if base:
            bd, ba = base_map[name]
            x = to_f32(bd, ba) + rng.standard_normal(shape).astype(np.float32) * noise
        else:
            x = rng.standard_normal(shape).astype(np.float32) * 0.05
        out.append((name, dtype, round_to(dtype, x)))
    if extra_int:
        out.append(("model.rotary.position_ids", "I64", np.arange(16, dtype=np.int64)))
    return out


def config(tie=False, dtype="bfloat16", layers=2, hidden=64, vocab=128):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab,
            "tie_word_embeddings": tie, "torch_dtype": dtype}


def write_hf(folder, tensors, cfg=None, shards=1, extra_files=True):
    """A Hugging Face folder; shards > 1 writes an index and that many files."""
    os.makedirs(folder, exist_ok=True)
    if cfg is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    if extra_files:
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "model": {"type": "BPE"}}, f)
        with open(os.path.join(folder, "generation_config.json"), "w") as f:
            json.dump({"do_sample": False}, f)
    if shards == 1:
        write(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
        return
    per = -(-len(tensors) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        part = tensors[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write(os.path.join(folder, fname), part, {"format": "pt"})
        for name, dtype, arr in part:
            weight_map[name] = fname
            total += arr.nbytes
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
