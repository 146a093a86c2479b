#!/usr/bin/env python3
"""Merging PyTorch checkpoints against the same weights in safetensors.

    bench/formats.py [--dir /dev/shm/ladle-formats] [--mb 1024] [--repeat 3]

Two models (a base and a fine-tune) of 8 bf16 tensors, --mb MB each, are
written twice: as torch.save archives (pytorch_model.bin) and as
safetensors. ladle lerps each pair, interleaved; PyTorch's own route
(torch.load of both, the lerp, safetensors' save_file when installed, else
torch.save) runs once for scale. ladle reads a .bin archive's storages in
place, so both should stream at the same speed. Not a test: timings are
noisy. Peak RSS from /usr/bin/time.
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import st  # noqa: E402
from timing import timed  # noqa: E402

LADLE = os.path.join(ROOT, "build", "ladle")
TORCH_LERP = """
import sys, torch
a = torch.load(sys.argv[1], weights_only=True)
b = torch.load(sys.argv[2], weights_only=True)
out = {k: (0.5 * a[k].float() + 0.5 * b[k].float()).to(a[k].dtype) for k in a}
torch.save(out, sys.argv[3])
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/dev/shm/ladle-formats")
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["make", "-C", ROOT, "-s", "all"], check=True)
    torch = st._torch()
    os.makedirs(a.dir, exist_ok=True)
    rows = a.mb * (1 << 20) // (8 * 4096 * 2)
    paths = {}
    for name, seed in (("base", 0), ("ft", 1)):
        b = os.path.join(a.dir, f"{name}.bin")
        s = os.path.join(a.dir, f"{name}.safetensors")
        paths[name] = (b, s)
        if os.path.exists(b) and os.path.exists(s):
            continue
        g = torch.Generator().manual_seed(seed)
        sd = {f"layers.{i}.w": torch.randn(rows, 4096, generator=g).to(torch.bfloat16)
              for i in range(8)}
        torch.save(sd, b)
        st.write(s, [(k, "BF16", v.view(torch.int16).numpy().view("uint16"))
                     for k, v in sd.items()])
    out = os.path.join(a.dir, "out.safetensors")
    times = {"bin": [], "safetensors": []}
    rss = {}
    for _ in range(a.repeat):
        for k, i in (("bin", 0), ("safetensors", 1)):
            s, m = timed([LADLE, "lerp", paths["base"][i], paths["ft"][i], "--alpha", "0.5",
                          "-o", out, "--force", "-q"])
            times[k].append(s)
            rss[k] = max(rss.get(k, 0), m)
    ts, tm = timed(["/usr/bin/python3", "-c", TORCH_LERP, paths["base"][0], paths["ft"][0],
                    os.path.join(a.dir, "torch_out.bin")])
    size = os.path.getsize(paths["base"][1]) / 1e9
    print(f"lerp of two {size:.2f} GB bf16 models (8 tensors each), median of {a.repeat}:")
    ref = statistics.median(times["safetensors"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  ladle, {k:12s} {med:6.2f} s  x{med / ref:4.2f} of safetensors   "
              f"peak RSS {rss[k]:7.1f} MB")
    print(f"  torch.load + lerp + torch.save (.bin)  {ts:6.2f} s  x{ts / ref:4.2f}   "
          f"peak RSS {tm:7.1f} MB")


if __name__ == "__main__":
    main()
