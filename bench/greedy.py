#!/usr/bin/env python3
"""The greedy soup's cost in model reads: `ladle soup --greedy` (each
candidate from the soup's stored fp32 sum and one new ingredient) against
the same search with every candidate merged from its ingredients (what
ladle did before: O(N^2) reads), same candidates, same bits, same
evaluator, measured in this one run. Not a test: timings are noisy.

  bench/greedy.py [--size 256MB] [-n 12] [--cold] [--eval-seconds S] [--dir bench/out] [--out-dir /dev/shm/ladle-bench]

The evaluator accepts or rejects by the candidate's newest ingredient (a
pattern per scenario), so both runs make the same decisions: "all
accepted" is the running sum's worst case (every step also extends the
sum), "every other" and "first 3 kept" more typical searches (Wortsman et al.'s
kept 5 of 72): a rejected step's successor is merged while it is evaluated. With --cold the evaluator
drops the page cache (root), so every merge reads the ingredients from the
disk, as for models larger than memory; the running sum stays on tmpfs.
Peak RSS is /usr/bin/time's.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LADLE = os.environ.get("LADLE", os.path.join(ROOT, "build", "ladle"))  # (another build: before/after)
PY = "/usr/bin/python3"

# The evaluator: 1 (kept: the scores given are all 1) if the candidate's
# newest ingredient is in ACCEPT, else 0. The candidate's recipe names its
# inputs; the newest is the last one.
EVALUATOR = r'''
import json, struct, sys, os
path, accept = sys.argv[1], set(sys.argv[2].split(","))
f = path if path.endswith(".safetensors") else os.path.join(path, "model.safetensors")
with open(f, "rb") as fh:
    n = struct.unpack("<Q", fh.read(8))[0]
    meta = json.loads(fh.read(n)).get("__metadata__", {})
newest = json.loads(meta["ladle_recipe"])["inputs"][-1]["path"]
if "cold" in sys.argv[3:]:  # the next merge reads the ingredients from the disk
    os.system("sync; echo 1 > /proc/sys/vm/drop_caches")
for arg in sys.argv[3:]:
    if arg.startswith("sleep="):  # an evaluation's time
        import time
        time.sleep(float(arg[6:]))
print(1 if os.path.basename(newest.rstrip("/")) in accept else 0)
'''


def timed(cmd):
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stderr}")
    secs, kb = p.stderr.strip().splitlines()[-1].split()
    return float(secs), int(kb) / 1024


def warm(paths):
    for p in paths:
        for f in os.listdir(p):
            with open(os.path.join(p, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass


def from_ingredients(models, accept, ev, out_dir, cold):
    """The same greedy search with every candidate merged from its
    ingredients (soup --sum-first, the same bits). -> seconds, peak MB."""
    t0, peak = time.time(), 0
    soup = [models[0]]
    for m in models[1:]:
        cand = os.path.join(out_dir, "cand")
        _, mb = timed([LADLE, "soup", "--sum-first", *soup, m, "-o", cand, "-q", "--force"])
        peak = max(peak, mb)
        score = float(subprocess.run([PY, ev, cand, ",".join(accept)] + cold,
                                     capture_output=True, text=True, check=True).stdout)
        shutil.rmtree(cand)
        if score >= 1:
            soup.append(m)
    out = os.path.join(out_dir, "old-out")
    _, mb = timed([LADLE, "soup", "--sum-first", *soup, "-o", out, "-q", "--force"])
    shutil.rmtree(out)
    return time.time() - t0, max(peak, mb), len(soup)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256MB")
    ap.add_argument("-n", type=int, default=12)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--eval-seconds", type=float, default=0,
                    help="each evaluation's time (sleep), as a real evaluator has one")
    ap.add_argument("--dir", default=os.path.join(HERE, "out"))
    ap.add_argument("--out-dir", default="/dev/shm/ladle-bench")
    a = ap.parse_args()
    subprocess.run(["make", "-C", ROOT, "-s", "all"], check=True)
    fam = os.path.join(a.dir, f"greedy-{a.n}x{a.size}")
    if not os.path.exists(os.path.join(fam, f"ft{a.n}", "config.json")):
        print(f"generating {a.n} bf16 fine-tunes of {a.size} in {fam} ...", flush=True)
        subprocess.run([PY, os.path.join(ROOT, "examples", "make_family.py"), fam, "--size",
                        a.size, "--fine-tunes", str(a.n), "--dtype", "bf16"], check=True)
    models = [os.path.join(fam, f"ft{i}") for i in range(1, a.n + 1)]
    os.makedirs(a.out_dir, exist_ok=True)
    ev = os.path.join(a.out_dir, "accept.py")
    with open(ev, "w") as f:
        f.write(EVALUATOR)
    warm(models)
    names = [os.path.basename(m) for m in models]
    scenarios = {"all accepted": names, "every other": names[::2], "first 3 kept": names[:3]}
    print(f"{a.n} bf16 ingredients of {a.size}; {'cold' if a.cold else 'warm'} page cache; "
          f"{a.eval_seconds:g} s per evaluation; candidates and sums on {a.out_dir}\n")
    print("| scenario | kept | ladle soup --greedy s | peak RSS | from the ingredients s "
          "| peak RSS | speed-up |")
    print("|---|---|---|---|---|---|---|")
    extra = (["cold"] if a.cold else []) + [f"sleep={a.eval_seconds}"]
    for label, accept in scenarios.items():
        work = os.path.join(a.out_dir, "work")
        out = os.path.join(a.out_dir, "out")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        cmd = [LADLE, "soup", "--greedy", "--scores", ",".join(["1"] * a.n), "--eval",
               f"{PY} {ev} {{model}} {','.join(accept)} {' '.join(extra)}", *models,
               "-o", out, "--work", work,
               "-q", "--json"]
        if a.cold:
            subprocess.run("sync; echo 1 > /proc/sys/vm/drop_caches", shell=True, check=True)
        else:
            warm(models)
        new_s, new_mb = timed(cmd)
        shutil.rmtree(out)
        if a.cold:
            subprocess.run("sync; echo 1 > /proc/sys/vm/drop_caches", shell=True, check=True)
        old_s, old_mb, kept = from_ingredients(models, accept, ev, a.out_dir, extra)
        print(f"| {label} | {kept} of {a.n} | {new_s:.2f} | {new_mb:.0f} MB | {old_s:.2f} | "
              f"{old_mb:.0f} MB | {old_s / new_s:.2f}x |", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\nBoth run the same evaluator on the same candidates; the ingredients' soup of k "
          "reads k models,\nthe running sum's candidate reads the F32 sum (2 bf16 models) and "
          "one ingredient, and an\naccepted step also extends the sum (reads 3, writes 2).")


if __name__ == "__main__":
    main()
