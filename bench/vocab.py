#!/usr/bin/env python3
"""What matching vocabulary rows by token costs (engine/vocab.c).

    bench/vocab.py [--dir /dev/shm/ladle-vocab] [--rows 32000] [--hidden 4096] [--repeat 3]

A base with a Llama-2-sized embedding and head (32000 x 4096 bf16, each
262 MB) and its tokenizer.json (32000 tokens, 61k merges, as Llama-2's),
and three fine-tunes of it: `same` (the same tokenizer.json: rows read
as they are), `added` (3 tokens added at the end, as chat fine-tunes do:
both tokenizers parsed, rows read in runs, 3 dropped) and `shuffled` (the
same tokens in a random order: every row read on its own). Each is
lerp'ed with the base, timed in this run, interleaved; peak RSS from
/usr/bin/time. Not a test: timings are noisy.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import st  # noqa: E402
from timing import timed  # noqa: E402

LADLE = os.path.join(ROOT, "build", "ladle")


def tokenizer(tokens, merges):
    return {"version": "1.0", "added_tokens": [],
            "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)},
                      "merges": merges}}


def write(folder, rows, tokens, merges):
    os.makedirs(folder, exist_ok=True)
    st.write(os.path.join(folder, "model.safetensors"),
             [("model.embed_tokens.weight", "BF16", rows), ("lm_head.weight", "BF16", rows)])
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer(tokens, merges), f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/dev/shm/ladle-vocab")
    ap.add_argument("--rows", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["make", "-C", ROOT, "-s", "all"], check=True)
    rng = np.random.default_rng(0)
    tokens = [f"\u2581tok{i}" for i in range(a.rows)]
    merges = [f"t{i} o{i}" for i in range(61000)]
    base = rng.integers(0x3c00, 0x3d00, (a.rows, a.hidden), dtype=np.uint16)  # bf16 bits
    perm = rng.permutation(a.rows)
    added = np.concatenate([base, base[:3]])
    cases = {
        "base": (base, tokens),
        "same": (base, tokens),
        "added": (added, tokens + ["<|im_start|>", "<|im_end|>", "<|pad|>"]),
        "shuffled": (base[perm], [tokens[i] for i in perm]),
    }
    for name, (rows, toks) in cases.items():
        if not os.path.exists(os.path.join(a.dir, name, "tokenizer.json")):
            write(os.path.join(a.dir, name), rows, toks, merges)
    out = os.path.join(a.dir, "out.safetensors")
    times = {k: [] for k in cases if k != "base"}
    rss = {}
    for _ in range(a.repeat):
        for k in times:
            s, m = timed([LADLE, "lerp", os.path.join(a.dir, "base"), os.path.join(a.dir, k),
                          "--alpha", "0.5", "-o", out, "--force", "-q"])
            times[k].append(s)
            rss[k] = max(rss.get(k, 0), m)
    tok_mb = os.path.getsize(os.path.join(a.dir, "base", "tokenizer.json")) / 1e6
    print(f"lerp of two {a.rows} x {a.hidden} bf16 embeddings + heads "
          f"({4 * a.rows * a.hidden * 2 / 1e9:.2f} GB read), tokenizer.json {tok_mb:.1f} MB, "
          f"median of {a.repeat}:")
    ref = statistics.median(times["same"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:9s} {med:6.2f} s  x{med / ref:4.2f} of same   peak RSS {rss[k]:6.1f} MB")


if __name__ == "__main__":
    main()
