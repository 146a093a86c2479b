#!/usr/bin/env python3
"""The PyTorch baseline: the same merges as a careful hand-written loop.

Models are memory-mapped and each tensor viewed with torch.frombuffer (no
copy, as safetensors' loader would give), merged in fp32 with PyTorch's
vectorised, multi-threaded kernels, rounded with .to(bfloat16) and written
as safetensors. This is the fast way to do it in PyTorch, not a strawman
torch.load loop.

  torch_merge.py soup OUT M1 M2 M3
  torch_merge.py task OUT BASE L1:M1 L2:M2
"""
import json
import mmap
import os
import struct
import sys

import warnings

import torch

warnings.filterwarnings("ignore", message="The given buffer is not writable")

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
SIZE = {"BF16": 2, "F16": 2, "F32": 4}


def open_model(folder):
    path = os.path.join(folder, "model.safetensors") if os.path.isdir(folder) else folder
    f = open(path, "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = struct.unpack("<Q", mm[:8])[0]
    header = json.loads(mm[8:8 + n])
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        s, e = info["data_offsets"]
        t = torch.frombuffer(mm, dtype=DT[info["dtype"]], count=(e - s) // SIZE[info["dtype"]],
                             offset=8 + n + s) if e > s else torch.empty(0, dtype=DT[info["dtype"]])
        tensors[name] = (info, t.view(info["shape"]))
    return tensors


def write(out, names, infos, produce):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in names:
        info = infos[name]
        size = info["data_offsets"][1] - info["data_offsets"][0]
        header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [off, off + size]}
        off += size
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name in names:
            f.write(produce(name).contiguous().view(torch.uint8).numpy())


def main():
    torch.set_grad_enabled(False)
    op, out = sys.argv[1], sys.argv[2]
    if op == "soup":
        models = [open_model(m) for m in sys.argv[3:]]
        first = models[0]

        def produce(name):
            acc = first[name][1].float()
            for m in models[1:]:
                acc += m[name][1].float()
            return (acc / len(models)).to(first[name][1].dtype)
    else:
        base = open_model(sys.argv[3])
        adds = [(float(a.split(":")[0]), open_model(a.split(":", 1)[1])) for a in sys.argv[4:]]
        first = base

        def produce(name):
            b = base[name][1].float()
            acc = torch.zeros_like(b)
            for lam, m in adds:
                acc += lam * (m[name][1].float() - b)
            return (b + acc).to(base[name][1].dtype)
    names = list(first)
    write(out, names, {k: v[0] for k, v in first.items()}, produce)


if __name__ == "__main__":
    main()
