#!/usr/bin/env python3
"""GGUF merges: speed against the I/O floor, and what re-quantising costs.

    bench/gguf_merge.py [--dir /dev/shm/ladle-gguf]

Two fine-tunes of one Llama-2-7B block (q, k, v, o 4096 x 4096; gate, up
11008 x 4096 ... stored as GGUF's [4096, 11008]; down 4096 x 11008; norms),
base ~ N(0, 0.02) with a few outliers, each fine-tune adding N(0, 0.002),
written as GGUF Q8_0 files by the test suite's reference quantiser
(tests/py/gguf.py, ggml's quantize_row_q8_0_ref). ladle merges them (lerp
0.5) three ways, timed one run each:

  Q8_0 -> Q8_0        the default: dequantised, averaged in fp32, re-quantised
  Q8_0 -> Q4_0        --quant q4_0
  Q8_0 -> F32 (.safetensors)   dequantised values, exact

Against the I/O floor (bench/iofloor.c: the same preads and pwrites with no
math; measured for the Q8_0 output, which has the inputs' size), and
relative RMS errors of each
output against the exact average of the dequantised inputs (what
re-quantising adds) and against the average of the original fp32 weights.
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
sys.path.insert(0, HERE)
import gguf  # noqa: E402
import st  # noqa: E402
from quant_error import layer, rel  # noqa: E402
from timing import timed  # noqa: E402

F32 = np.float32
LADLE = os.path.join(ROOT, "build", "ladle")
SHAPES = {"attn_q": (4096, 4096), "attn_k": (4096, 4096), "attn_v": (4096, 4096),
          "attn_output": (4096, 4096), "ffn_gate": (11008, 4096), "ffn_up": (11008, 4096),
          "ffn_down": (4096, 11008), "attn_norm": (4096,), "ffn_norm": (4096,)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/dev/shm/ladle-gguf")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(7)
    kvs = [("general.architecture", gguf.STRING, "llama"), ("llama.block_count", gguf.U32, 1)]
    exact, orig, files = {}, {}, []
    tensors = [[], []]
    for short, shape in SHAPES.items():
        name = f"blk.0.{short}.weight"
        fts = layer(rng, shape)
        orig[name] = (fts[0].astype(np.float64) + fts[1]) / 2
        deq = []
        for m, x in enumerate(fts):
            if len(shape) == 1:
                tensors[m].append((name, "F32", shape, x.tobytes()))
                deq.append(x)
            else:
                raw = gguf.quant("Q8_0", x)
                tensors[m].append((name, "Q8_0", shape, raw))
                deq.append(gguf.dequant("Q8_0", shape, raw))
        exact[name] = (F32(0.5) * deq[0] + F32(0.5) * deq[1]).astype(np.float64)
    for m in range(2):
        p = os.path.join(a.dir, f"ft{m}.gguf")
        gguf.write(p, kvs, tensors[m])
        files.append(p)
    in_bytes = sum(os.path.getsize(f) for f in files)
    iofloor = os.path.join(a.dir, "iofloor")
    subprocess.run(["cc", "-O2", "-std=c11", "-o", iofloor, os.path.join(HERE, "iofloor.c"),
                    "-lpthread"], check=True)
    print(f"inputs: 2 x {in_bytes / 2e9:.2f} GB GGUF Q8_0 (one Llama-2-7B block each), "
          f"outputs on {a.dir}; one run each\n")
    print("| output | ladle s | peak RSS | I/O floor s | vs floor | vs exact average | "
          "vs fp32 average |")
    print("|---|---|---|---|---|---|---|")
    for label, out, extra in [("Q8_0 (default)", "o8.gguf", []),
                              ("Q4_0 (--quant q4_0)", "o4.gguf", ["--quant", "q4_0"]),
                              ("F32 .safetensors", "o.safetensors", [])]:
        path = os.path.join(a.dir, out)
        if os.path.exists(path):
            os.remove(path)
        secs, rss = timed([LADLE, "lerp", *files, "--alpha", "0.5", *extra, "-q", "-o", path])
        floor = None
        if out == "o8.gguf":  # the same size as each input: exactly the floor's traffic
            copy = os.path.join(a.dir, "floor.bin")
            floor = float(subprocess.run([iofloor, copy, str(os.cpu_count()), *files],
                                         capture_output=True, text=True, check=True).stdout)
            os.remove(copy)
        if out.endswith(".gguf"):
            _, ts, _ = gguf.read(path)
            got = {k: (gguf.dequant(t, s, r) if t in ("Q8_0", "Q4_0") else gguf.values(t, s, r))
                   for k, (t, s, r) in ts.items()}
        else:
            got = {k: v for k, (_, v) in st.read(path)[0].items()}
        mats = [k for k in SHAPES if len(SHAPES[k]) == 2]
        e_exact = np.mean([rel(got[f"blk.0.{k}.weight"], exact[f"blk.0.{k}.weight"])
                           for k in mats])
        e_orig = np.mean([rel(got[f"blk.0.{k}.weight"], orig[f"blk.0.{k}.weight"])
                          for k in mats])
        fl = f"{floor:.2f} | {floor / secs:.0%}" if floor else "- | -"
        print(f"| {label} | {secs:.2f} | {rss:.0f} MB | {fl} | {e_exact:.2e} | {e_orig:.2e} |")
        os.remove(path)
    q8 = np.mean([rel(exact[f"blk.0.{k}.weight"], orig[f"blk.0.{k}.weight"])
                  for k in SHAPES if len(SHAPES[k]) == 2])
    print(f"\nthe inputs' own Q8_0 error, carried into any merge of them: {q8:.2e} "
          "(exact average of the dequantised inputs vs the fp32 average)")
    shutil.rmtree(a.dir)


if __name__ == "__main__":
    main()
