"""Test models: written as files by tests/py/st.py (independent of ladle)
and held in memory as torch or numpy state dicts."""
import os

import numpy as np
import torch

import ladle
import st


def torch_of(dtype, arr):
    if dtype == "BF16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(arr))


def as_kind(tensors, kind):
    """tensors: [(name, dtype, stored array)] -> a path-free state dict."""
    if kind == "torch":
        return {n: torch_of(d, a) for n, d, a in tensors}
    return {n: ladle.Bits(a, "BF16") if d == "BF16" else np.array(a) for n, d, a in tensors}


def raw(x):
    """The stored bytes of a result tensor (torch, numpy or Bits)."""
    if isinstance(x, ladle.Bits):
        return x.array.tobytes()
    if isinstance(x, torch.Tensor):
        t = x.contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        return t.numpy().tobytes()
    return np.ascontiguousarray(x).tobytes()


def f32(x):
    """A result tensor's values as float32 (bf16 widened exactly)."""
    if isinstance(x, torch.Tensor):
        return x.float().numpy()
    return np.asarray(x, np.float32)


def file_tensors(path):
    return {n: a for n, (d, a) in st.load(str(path))[0].items()}


def family(tmp_path, rng, dtype="F32", n=3, layers=2, prefix="m"):
    """A base and n fine-tunes: ([paths], [tensor lists]); paths[0] is the base."""
    base = st.llama(rng, dtype, layers=layers)
    models = [base] + [st.llama(rng, dtype, layers=layers, base=base, noise=0.02 * (i + 1))
                       for i in range(n)]
    paths = []
    for i, m in enumerate(models):
        p = os.path.join(tmp_path, f"{prefix}{i}.safetensors")
        st.write(p, m)
        paths.append(p)
    return paths, models


def inputs(paths, models, kind):
    """The same models as paths, or as torch / numpy state dicts."""
    if kind == "paths":
        return list(paths)
    return [as_kind(m, kind) for m in models]
