#!/usr/bin/python3
"""The example's evaluator: accuracy (%) of a model on one split.

    eval.py MODEL [--split val|test] [--data DATA.npz]

Prints one line, "accuracy NN.NN", whose last number is the score ladle
reads. numpy only, so it starts fast: ladle runs it once per candidate."""
import argparse
import os

import numpy as np

from safetensors_io import load


def accuracy(model_path, data, split):
    w = load(model_path)
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    h = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    h = np.maximum(h @ w["fc2.weight"].T + w["fc2.bias"], 0)
    logits = h @ w["head.weight"].T + w["head.bias"]
    return 100.0 * float(np.mean(np.argmax(logits, axis=1) == y))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "out", "models", "data.npz"))
    args = ap.parse_args()
    with np.load(args.data) as data:
        print(f"accuracy {accuracy(args.model, data, args.split):.2f}")


if __name__ == "__main__":
    main()
