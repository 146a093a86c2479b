#!/usr/bin/env python3
"""How much error quantised merges add, on real-shaped layers.

    bench/quant_error.py [--dir /dev/shm/ladle-quant]

Two fine-tunes of one layer (base ~ N(0, 0.02) with a few outliers; each
fine-tune adds N(0, 0.002)) are quantised as checkpoints ship them and
merged by ladle (a uniform soup), which reads the dequantised values,
averages them in fp32 and re-quantises in the inputs' scheme. The figures
are relative RMS errors against the soup of the original fp32 weights:

  inputs        the error the checkpoints already carry (quantising a fine-tune)
  merge         ladle's output against the exact soup of the same dequantised inputs
                (what re-quantising adds)
  total         ladle's output against the soup of the original weights

Layers: DeepSeek-V3's expert down_proj [7168, 2048] in FP8 E4M3 with 128 x 128
block scales, and a gpt-oss-20b expert [2880, 2880] in MXFP4. The quantisers
are the test suite's references (tests/py/test_quant.py).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import st  # noqa: E402
from test_quant import dequant_fp8, dequant_mxfp4, quant_fp8, quant_mxfp4  # noqa: E402

F32 = np.float32
LADLE = os.path.join(ROOT, "build", "ladle")


def layer(rng, shape):
    base = (rng.standard_normal(shape) * 0.02).astype(F32)
    base.reshape(-1)[rng.integers(0, base.size, base.size // 10000)] *= F32(20)  # outliers
    return [(base + rng.standard_normal(shape).astype(F32) * F32(0.002)).astype(F32)
            for _ in range(2)]


def rel(a, b):
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)) /
                 np.sqrt(np.mean(b.astype(np.float64) ** 2)))


def run(label, fts, write, read, workdir):
    paths = []
    deq = []
    for i, x in enumerate(fts):
        p = os.path.join(workdir, f"{label}-{i}.safetensors")
        deq.append(write(p, x))
        paths.append(p)
    out = os.path.join(workdir, f"{label}-soup.safetensors")
    subprocess.run([LADLE, "soup", *paths, "-o", out, "-q", "--force"], check=True)
    got = read(out)
    exact = (F32(0.5) * fts[0] + F32(0.5) * fts[1]).astype(np.float64)
    merged = (F32(0.5) * deq[0] + F32(0.5) * deq[1]).astype(np.float64)
    print(f"| {label} | {rel(deq[0], fts[0]):.2e} | {rel(got, merged):.2e} | "
          f"{rel(got, exact):.2e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/dev/shm/ladle-quant")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(0)
    print("| layer | inputs | merge (re-quantising) | total |")
    print("|---|---|---|---|")

    def write_fp8(path, x):
        codes, s = quant_fp8("F8_E4M3", x, "block")
        st.write(path, [("w", "F8_E4M3", codes), ("w_scale_inv", "F32", s)])
        return dequant_fp8("F8_E4M3", codes, s, "block")

    def read_fp8(path):
        t = st.read(path)[0]
        return dequant_fp8("F8_E4M3", t["w"][1], t["w_scale_inv"][1], "block")

    run("FP8 E4M3 128x128 [7168, 2048]", layer(rng, (7168, 2048)), write_fp8, read_fp8,
        args.dir)

    def write_mx(path, x):
        blocks, scales = quant_mxfp4(x.reshape(1, 2880, 2880))
        st.write(path, [("e_blocks", "U8", blocks), ("e_scales", "U8", scales)])
        return dequant_mxfp4(blocks, scales).reshape(2880, 2880)

    def read_mx(path):
        t = st.read(path)[0]
        return dequant_mxfp4(t["e_blocks"][1], t["e_scales"][1]).reshape(2880, 2880)

    run("MXFP4 [2880, 2880]", layer(rng, (2880, 2880)), write_mx, read_mx, args.dir)


if __name__ == "__main__":
    main()
