#!/usr/bin/python3
"""Notebook-style: merging state dicts you already hold in memory.

    examples/python/in_memory.py      (a few seconds)

Each "cell" below is what you would type in a notebook with models loaded
(here: three small torch models made up on the spot). Nothing is written to
disk until the last cell; every result is a fresh state dict of torch
tensors, computed in fp32 and rounded once, exactly as the ``ladle`` CLI
computes the same merge.
"""
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python"))
import ladle  # noqa: E402

torch.manual_seed(0)


def model():
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))


# [1] a base and two "fine-tunes" of it, as bf16 state dicts
base = {k: v.to(torch.bfloat16) for k, v in model().state_dict().items()}
ft_a = {k: v + 0.01 * torch.randn_like(v) for k, v in base.items()}
ft_b = {k: v + 0.01 * torch.randn_like(v) for k, v in base.items()}
print("[1]", {k: (tuple(v.shape), v.dtype) for k, v in base.items()})

# [2] interpolation and soups; alpha may be a gradient across the layers
half = ladle.linear_interpolate(ft_a, ft_b, alpha=0.5)
soup = ladle.uniform_soup([base, ft_a, ft_b], dtype="f32")
print("[2]", half["0.weight"].dtype, soup["0.weight"].dtype,
      float((soup["0.weight"] - base["0.weight"].float()).abs().max()))

# [3] task vectors compose symbolically; apply_to runs the expression once
tau_a, tau_b = ladle.TaskVector(base, ft_a), ladle.TaskVector(base, ft_b)
expr = 0.7 * tau_a + 0.3 * tau_b - 0.2 * tau_b
print("[3]", expr)
merged = expr.apply_to(base, scaling=1.0)
print("   ", float((merged["2.bias"].float() - base["2.bias"].float()).abs().max()))

# [4] the methods past averaging, with mergekit's parameters
print("[4] ties:", ladle.ties(base, [ft_a, ft_b], density=0.2)["0.weight"].shape,
      " dare:", ladle.dare(base, [ft_a, ft_b], density=0.5, seed=1)["0.weight"].shape,
      " slerp:", ladle.slerp(ft_a, ft_b, t=0.3)["0.weight"].shape)

# [5] an in-process sweep: the score function sees each candidate in memory
target = {k: v.float() for k, v in ft_b.items()}


def score(sd):
    return -sum(float(((sd[k].float() - target[k]) ** 2).sum()) for k in target)


print("[5]", [(round(a, 2), round(s, 5)) for a, s in ladle.alpha_sweep(ft_a, ft_b, score,
                                                                         n_steps=5)])

# [6] to disk (atomic), and back lazily: a memory-mapped, read-only mapping
with tempfile.TemporaryDirectory() as d:
    path = ladle.save(merged, os.path.join(d, "merged.safetensors"), metadata={"by": "me"})
    loaded = ladle.load(path)
    print("[6]", loaded, loaded["0.weight"].dtype,
          torch.equal(loaded["0.weight"], merged["0.weight"]))
