#!/usr/bin/python3
"""A stand-in for a user's evaluator, for the greedy soup and sweep tests.

    evaluator.py MODEL TARGET [--record FILE] [--sleep S] [--list DIR] [--minimize]

Its score is minus the mean squared distance of MODEL's float tensors to
TARGET's (a loss with --minimize), computed in fp64 from the files: a
deterministic function of exactly the bytes ladle wrote. --record appends
one JSON line per run (model, slot, start and end times) so tests can count
evaluations and see which ran at once; --list adds the names in DIR after
the sleep (what the search had made meanwhile)."""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def distance(model, target):
    m, _ = st.load(model)
    t, _ = st.load(target)
    total, n = 0.0, 0
    for name, (dtype, arr) in t.items():
        if dtype not in ("F32", "F16", "BF16", "F64"):
            continue
        d = st.to_f64(m[name][0], m[name][1]) - st.to_f64(dtype, arr)
        total += float(np.sum(d * d))
        n += d.size
    return total / n


def score(model, target, minimize=False):
    d = distance(model, target)
    return d if minimize else -d


def main(argv):
    model, target = argv[0], argv[1]
    minimize = "--minimize" in argv
    rest = [a for a in argv[2:] if a != "--minimize"]
    opts = dict(zip(rest[0::2], rest[1::2]))
    start = time.time()
    if "--sleep" in opts:
        time.sleep(float(opts["--sleep"]))
    s = score(model, target, minimize)
    if "--record" in opts:
        with open(opts["--record"], "a") as f:
            f.write(json.dumps({"model": model, "slot": os.environ.get("LADLE_SLOT"),
                                "env_model": os.environ.get("LADLE_MODEL"),
                                "start": start, "end": time.time(),
                                "listed": sorted(os.listdir(opts["--list"]))
                                if "--list" in opts else None}) + "\n")
    print(f"evaluated {model}")
    print(f"score: {s!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
