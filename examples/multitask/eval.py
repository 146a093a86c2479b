#!/usr/bin/python3
"""Accuracy of a (merged) encoder on every task, each with its own head.

    eval.py ENCODER --data DIR [--split val|test] [--json]

Prints one line per task and, last, the mean accuracy in % (the number
ladle's evaluator protocol reads). numpy only.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model_soup"))
from safetensors_io import load  # noqa: E402

from tasks import TASKS, view  # noqa: E402


def accuracies(enc, data_dir, split):
    d = np.load(os.path.join(data_dir, "data.npz"))
    idx = d[split]
    out = {}
    for task in TASKS:
        x, y = view(task, d["x"][idx], d["y"][idx])
        h = np.maximum(x @ enc["fc1.weight"].T + enc["fc1.bias"], 0)
        h = np.maximum(h @ enc["fc2.weight"].T + enc["fc2.bias"], 0)
        head = load(os.path.join(data_dir, "heads", f"{task}.safetensors"))
        logits = h @ head["head.weight"].T + head["head.bias"]
        out[task] = 100.0 * float(np.mean(logits.argmax(1) == y))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("encoder")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    acc = accuracies(load(a.encoder), a.data, a.split)
    if a.json:
        print(json.dumps(acc))
    for task, v in acc.items():
        print(f"{task}: {v:.2f}")
    print(f"mean: {np.mean(list(acc.values())):.4f}")


if __name__ == "__main__":
    main()
