#!/usr/bin/env python3
"""The subspace methods: ladle against FusionBench's own PyTorch functions.

    bench/subspace.py --fusionbench DIR [--shape 2048x2048] [--tasks 4]
                      [--wudi-iters 20] [--dir /dev/shm/ladle-subspace]

DIR is a checkout of FusionBench (github.com/tanganke/fusion_bench; it is
not on Debian, and is never copied here): its functions iso_c, iso_cts
(fusion_bench/method/isotropic_merging/iso_utils.py),
compute_and_sum_svd_mem_reduction (task_singular_vector/utils/TSVM_utils.py)
and wudi_merging (wudi/wudi.py) are loaded from their files, with the few
fusion_bench helpers they import stood in for (a timer, type names), and run
on the CPU (accelerator="cpu") on the same inputs ladle merges:

  layer   one matrix of --shape (4096x4096 is a 7B attention projection)
          and T fine-tunes of it (full-rank deltas, smoothly decaying spectra)
  model   a small Llama-shaped family (examples/make_family.py, 24 MB)

Reported per method and input: seconds and peak RSS of each (each in its
own process, /usr/bin/time), the ratio, and the largest difference of the
merged task vectors relative to the task vectors' scale. WUDI runs
--wudi-iters steps in both (its 300 on a big layer take FusionBench hours
on a CPU). Not a test: timings are noisy; both use both cores (OpenBLAS).
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
from timing import timed  # noqa: E402

LADLE = os.path.join(ROOT, "build", "ladle")
PY = "/usr/bin/python3"

# Runs one FusionBench function on the task vectors of BASE and the
# fine-tunes; saves the merged task vectors as OUT.npz.
RUNNER = r"""
import importlib.util, json, struct, sys, time, types, contextlib
import numpy as np, torch
fb, method, out, base, *fts = sys.argv[1:]
iters = int(method.split(":")[1]) if ":" in method else 0
method = method.split(":")[0]
# stand-ins for the fusion_bench helpers these files import
def mod(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m
@contextlib.contextmanager
def timeit_context(msg=""):
    yield
def stub(name):
    return type(name, (), {"__init__": lambda self, *a, **k: None})
mod("fusion_bench", BaseAlgorithm=stub("BaseAlgorithm"), BaseModelPool=stub("BaseModelPool"),
    auto_register_config=lambda c: c)
mod("fusion_bench.utils", timeit_context=timeit_context)
mod("fusion_bench.utils.type", StateDictType=dict)
mod("fusion_bench.utils.state_dict_arithmetic", state_dict_add=None, state_dict_sub=None)
mod("fusion_bench.mixins", LightningFabricMixin=stub("LightningFabricMixin"))
if importlib.util.find_spec("tqdm") is None:
    mod("tqdm", tqdm=type("tqdm", (), {"__init__": lambda s, it=None, **k: setattr(s, "it", it),
                                        "__iter__": lambda s: iter(s.it),
                                        "write": staticmethod(lambda *a, **k: None)}))
def load_file(rel, name):
    spec = importlib.util.spec_from_file_location(name, f"{fb}/fusion_bench/method/{rel}")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    hdr.pop("__metadata__", None)
    return {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]],
                                               dtype=np.float32).reshape(v["shape"]).copy())
            for k, v in hdr.items()}
torch.set_num_threads(2)
b = load(base)
tvs = [{k: v - b[k] for k, v in load(f).items()} for f in fts]
vocab = [k for k in b if "embed_tokens" in k or "lm_head" in k]
import io, contextlib as cl
t0 = time.time()
with cl.redirect_stdout(io.StringIO()):
    if method == "iso_c":
        r = load_file("isotropic_merging/iso_utils.py", "iso_utils").iso_c(
            tvs, accelerator="cpu", exclude_keys=vocab)
    elif method == "iso_cts":
        r = load_file("isotropic_merging/iso_utils.py", "iso_utils").iso_cts(
            tvs, 0.8, accelerator="cpu", exclude_keys=vocab)
    elif method == "tsv":
        r = load_file("task_singular_vector/utils/TSVM_utils.py", "tsvm").compute_and_sum_svd_mem_reduction(
            tvs, exclude_keys=vocab, accelerator="cpu")
    elif method == "wudi":
        r = load_file("wudi/wudi.py", "wudi").wudi_merging(
            tvs, accelerator="cpu", iter_num=iters, exclude_keys=vocab)
print(time.time() - t0, file=sys.stderr)
np.savez(out, **{k: v.detach().numpy() for k, v in r.items()})
"""


def layer(d, shape, T, rng):
    """One matrix and T fine-tunes, each delta of full rank with singular
    values decaying smoothly (0.05 e^(-3 i / q)): TSV's cut at q / T then
    falls between distinct singular values (inside a flat noise bulk the
    kept vectors are arbitrary in any precision, and fp32 and fp64 differ)."""
    m, n = shape
    base = (rng.standard_normal((m, n)) * 0.02).astype(np.float32)
    paths = [d / "base.safetensors"]
    st.write(paths[0], [("model.layers.0.self_attn.q_proj.weight", "F32", base)])
    r = min(m, n)
    for t in range(T):
        U = np.linalg.qr(rng.standard_normal((m, r)))[0]
        V = np.linalg.qr(rng.standard_normal((n, r)))[0]
        delta = (U * (0.05 * np.exp(-3 * np.arange(r) / r))) @ V.T
        p = d / f"ft{t}.safetensors"
        st.write(p, [("model.layers.0.self_attn.q_proj.weight", "F32",
                      (base + delta).astype(np.float32))])
        paths.append(p)
    return paths


def family(d, T):
    subprocess.run([PY, os.path.join(ROOT, "examples", "make_family.py"), str(d / "fam"),
                    "--size", "24MB", "--fine-tunes", str(T), "--dtype", "f32"],
                   check=True, capture_output=True)
    return [d / "fam" / "base"] + [d / "fam" / f"ft{t + 1}" for t in range(T)]


def as_file(p):
    return p / "model.safetensors" if p.is_dir() else p


def compare(ladle_out, fb_out, inputs):
    got = st.load(str(ladle_out))[0]
    ref = np.load(fb_out)
    base = st.load(str(inputs[0]))[0]
    scale, worst = 0.0, 0.0
    xs = [st.load(str(p))[0] for p in inputs[1:]]
    for k in ref.files:
        b = st.to_f32(*base[k])
        scale = max([scale] + [float(np.max(np.abs(st.to_f32(*x[k]) - b))) for x in xs])
        worst = max(worst, float(np.max(np.abs((st.to_f32(*got[k]) - b) - ref[k]))))
    return worst / scale if scale else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fusionbench", required=True, help="a FusionBench checkout")
    ap.add_argument("--shape", default="2048x2048")
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--wudi-iters", type=int, default=20)
    ap.add_argument("--dir", default="/dev/shm/ladle-subspace")
    ap.add_argument("--only", help="comma-separated methods (iso_c,iso_cts,tsv,wudi)")
    a = ap.parse_args()
    from pathlib import Path
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = tuple(int(x) for x in a.shape.split("x"))
    inputs = {f"layer {a.shape}": layer(d, shape, a.tasks, rng), "model 24 MB": family(d, a.tasks)}
    methods = (a.only or "iso_c,iso_cts,tsv,wudi").split(",")
    cmd = {"iso_c": "iso-c", "iso_cts": "iso-cts", "tsv": "tsv", "wudi": "wudi"}
    print(f"{a.tasks} tasks; ladle {subprocess.run([LADLE, '--version'], capture_output=True, text=True).stdout.split()[1]}")
    print(f"{'method':10} {'input':18} {'ladle s':>8} {'MB':>7} {'FusionBench s':>14} {'MB':>7} "
          f"{'speed-up':>9} {'max diff':>9}")
    for meth in methods:
        for label, paths in inputs.items():
            out = d / f"{meth}.safetensors"
            extra = ["--iter-num", str(a.wudi_iters)] if meth == "wudi" else []
            ls, lm = timed([LADLE, cmd[meth], "--base", as_file(paths[0]),
                            *map(as_file, paths[1:]), *extra, "--dtype", "f32", "-o", out,
                            "-q", "--force"])
            spec = f"wudi:{a.wudi_iters}" if meth == "wudi" else meth
            fs, fm = timed([PY, "-c", RUNNER, a.fusionbench, spec, d / f"{meth}.npz",
                            as_file(paths[0]), *map(as_file, paths[1:])])
            diff = compare(out, d / f"{meth}.npz", [as_file(p) for p in paths])
            print(f"{meth:10} {label:18} {ls:8.2f} {lm:7.0f} {fs:14.2f} {fm:7.0f} "
                  f"{fs / ls if ls else 0:8.1f}x {diff:9.1e}", flush=True)


if __name__ == "__main__":
    main()
