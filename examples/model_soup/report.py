#!/usr/bin/python3
"""Prints the demo's result: best single ingredient, uniform soup, greedy
soup (and the best point of the interpolation sweep), each on the
validation split (what chose them) and on the test split (held out).

    report.py OUT_DIR"""
import json
import os
import sys

import numpy as np

from eval import accuracy

out = sys.argv[1]
greedy = json.load(open(os.path.join(out, "greedy.json")))
sweep = json.load(open(os.path.join(out, "sweep.json")))
rows = [("best single ingredient", greedy["ingredients"][0]["model"]),
        ("uniform soup (all %d)" % len(greedy["ingredients"]),
         os.path.join(out, "uniform.safetensors")),
        ("greedy soup (%d of %d)" % (len(greedy["soup"]), len(greedy["ingredients"])),
         os.path.join(out, "greedy.safetensors")),
        ("pretrained -> greedy, alpha=%g" % sweep["best"]["params"]["alpha"],
         os.path.join(out, "sweep.safetensors"))]
with np.load(os.path.join(out, "models", "data.npz")) as data:
    print()
    print(f"{'model':<34} {'val acc %':>9} {'test acc %':>10}")
    for label, path in rows:
        print(f"{label:<34} {accuracy(path, data, 'val'):>9.2f} "
              f"{accuracy(path, data, 'test'):>10.2f}")
    print(f"\nbest single ingredient: {os.path.basename(rows[0][1])}; greedy soup: "
          + ", ".join(os.path.basename(m) for m in greedy["soup"]))
