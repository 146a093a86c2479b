#!/usr/bin/env python3
"""LoRA extraction: ladle's exact and randomized SVDs against PyTorch's.

    bench/lora_extract.py [--dir /dev/shm/ladle-extract] [--layers 1] [--rank 64]

A base and a fine-tune shaped like one or more Llama-2-7B blocks (q, k, v,
o 4096 x 4096; gate, up 11008 x 4096; down 4096 x 11008; bf16) whose
deltas have a decaying spectrum (a rank-256 signal, singular values falling
geometrically, plus noise: roughly what a full fine-tune's deltas look
like). ladle extracts a rank-R adapter with LAPACK's sgesdd (exact, as
mergekit's torch.linalg.svd) and with its randomized SVD; PyTorch runs
mergekit's own computation (torch.linalg.svd of each fp32 delta, full
matrices off) on the same tensors, once, for scale. Reported: seconds, peak
RSS, and the relative error |D - B A|_F / |D|_F of each. Not a test:
timings are noisy, and the BLAS threads take both cores.
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import st  # noqa: E402
from timing import timed  # noqa: E402

LADLE = os.path.join(ROOT, "build", "ladle")
TORCH_SVD = r"""
import json, struct, sys, time, torch
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.bfloat16)
        out[k] = t.reshape(v["shape"])
    return out
base, ft, rank = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
t0 = time.time()
e2 = n2 = 0.0
for k in ft:
    if ft[k].ndim != 2 or "embed" in k or "lm_head" in k:
        continue
    d = ft[k].float() - base[k].float()
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    a = torch.diag(torch.sqrt(s[:rank])) @ vh[:rank]
    b = u[:, :rank] @ torch.diag(torch.sqrt(s[:rank]))
    e2 += float(((d - b @ a) ** 2).sum())
    n2 += float((d ** 2).sum())
print(time.time() - t0, (e2 / n2) ** 0.5)
"""


def make(dirname, layers, rng):
    shapes = []
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + "self_attn.q_proj.weight", (4096, 4096)),
                   (p + "self_attn.k_proj.weight", (4096, 4096)),
                   (p + "self_attn.v_proj.weight", (4096, 4096)),
                   (p + "self_attn.o_proj.weight", (4096, 4096)),
                   (p + "mlp.gate_proj.weight", (11008, 4096)),
                   (p + "mlp.up_proj.weight", (11008, 4096)),
                   (p + "mlp.down_proj.weight", (4096, 11008)),
                   (p + "input_layernorm.weight", (4096,))]
    base, ft = [], []
    for name, shape in shapes:
        x = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        if len(shape) == 2:
            k = 256
            s = (0.97 ** np.arange(k)).astype(np.float32)
            d = ((rng.standard_normal((shape[0], k)).astype(np.float32) * s) @
                 rng.standard_normal((k, shape[1])).astype(np.float32)) * 2e-4
            d += rng.standard_normal(shape).astype(np.float32) * 2e-5
        else:
            d = rng.standard_normal(shape).astype(np.float32) * 1e-3
        base.append((name, "BF16", st.round_to("BF16", x)))
        ft.append((name, "BF16", st.round_to("BF16", x + d)))
    st.write(os.path.join(dirname, "base.safetensors"), base)
    st.write(os.path.join(dirname, "ft.safetensors"), ft)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/dev/shm/ladle-extract")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--rank", type=int, default=64)
    a = ap.parse_args()
    subprocess.run(["make", "-C", ROOT, "-s", "all"], check=True)
    os.makedirs(a.dir, exist_ok=True)
    b, f = os.path.join(a.dir, "base.safetensors"), os.path.join(a.dir, "ft.safetensors")
    if not os.path.exists(f):
        make(a.dir, a.layers, np.random.default_rng(0))
    print(f"{a.layers} Llama-2-7B block(s), rank {a.rank}, bf16; BLAS threads on both cores")
    print(f"{'':28s} {'seconds':>8s} {'peak MB':>8s} {'rel. error':>11s}")
    for label, extra in (("ladle --exact (sgesdd)", ["--exact"]),
                         ("ladle --randomized", ["--randomized"])):
        out = os.path.join(a.dir, "adapter")
        secs, mb, _, err = timed([LADLE, "lora", "extract", "--base", b, "--fine-tuned", f,
                                  "--rank", a.rank, "-o", out, "--force", *extra], output=True)
        rel = float(re.search(r"relative error ([0-9.e+-]+)", err).group(1))
        print(f"{label:28s} {secs:8.2f} {mb:8.0f} {rel:11.5f}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch not installed: no reference run")
        return
    secs, mb, out, _ = timed([sys.executable, "-c", TORCH_SVD, b, f, a.rank], output=True)
    svd_s, rel = map(float, out.split())
    print(f"{'PyTorch torch.linalg.svd':28s} {secs:8.2f} {mb:8.0f} {rel:11.5f}"
          f"   (SVDs alone {svd_s:.2f} s)")


if __name__ == "__main__":
    main()
