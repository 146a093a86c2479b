#!/usr/bin/python3
"""The multi-task table, as the merging papers print it, and its chart.

    report.py OUT_DIR

Reads the merged encoders and the sweeps run.sh left in OUT_DIR, scores
every model on the test split, prints a Markdown table (accuracy per task,
the average, and the normalised average: each task's accuracy over its own
fine-tune's, averaged) and writes OUT_DIR/results.svg.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model_soup"))
sys.path.insert(0, HERE)  # first: this eval.py, not the model soup's
from eval import accuracies  # noqa: E402
from safetensors_io import load  # noqa: E402
from tasks import TASKS  # noqa: E402

METHODS = ["task_arithmetic", "ties", "tsv", "iso_c", "iso_cts", "wudi", "consensus_ta",
           "consensus_ties"]


def svg(rows, path):
    """Grouped bars: per method, one bar per task (test accuracy), and the
    normalised average as a line across; plain SVG, any browser draws it."""
    colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]
    W, H, left, top, bottom = 900, 380, 50, 30, 90
    gw = (W - left - 20) / len(rows)
    bw = gw * 0.8 / len(TASKS)
    y = lambda v: top + (H - top - bottom) * (1 - v / 100)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">Test accuracy per '
           'task (bars) and normalised average (line), %</text>']
    for v in range(0, 101, 20):
        out.append(f'<line x1="{left}" x2="{W - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    pts = []
    for g, (name, acc, norm) in enumerate(rows):
        x0 = left + g * gw + gw * 0.1
        for i, t in enumerate(TASKS):
            out.append(f'<rect x="{x0 + i * bw:.1f}" y="{y(acc[t]):.1f}" width="{bw - 1:.1f}" '
                       f'height="{y(0) - y(acc[t]):.1f}" fill="{colors[i % len(colors)]}">'
                       f'<title>{name} {t}: {acc[t]:.1f}</title></rect>')
        cx = left + g * gw + gw / 2
        pts.append(f"{cx:.1f},{y(min(norm, 100)):.1f}")
        out.append(f'<text x="{cx:.1f}" y="{H - bottom + 16}" text-anchor="end" '
                   f'transform="rotate(-35 {cx:.1f} {H - bottom + 16})">{name}</text>')
    out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="black" '
               'stroke-width="2"/>')
    for p in pts:
        cx, cy = p.split(",")
        out.append(f'<circle cx="{cx}" cy="{cy}" r="3"/>')
    for i, t in enumerate(TASKS):
        out.append(f'<rect x="{left + i * 110}" y="{H - 22}" width="10" height="10" '
                   f'fill="{colors[i % len(colors)]}"/><text x="{left + i * 110 + 14}" '
                   f'y="{H - 13}">{t}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    out = sys.argv[1]
    m = os.path.join(out, "models")
    individual = {t: accuracies(load(os.path.join(m, f"{t}.safetensors")), m, "test")[t]
                  for t in TASKS}
    rows = [("pre-trained", accuracies(load(os.path.join(m, "base.safetensors")), m, "test"))]
    lambdas = {}
    for name in METHODS:
        path = os.path.join(out, "merged", f"{name}.safetensors")
        if not os.path.exists(path):
            continue
        rows.append((name, accuracies(load(path), m, "test")))
        sweep = json.load(open(os.path.join(out, "merged", f"{name}.sweep.json")))
        lambdas[name] = [p["params"]["lambda"] for p in sweep["points"] if p["best"]][0]
    rows.insert(1, ("individual", individual))
    table = []
    print("| method | lambda | " + " | ".join(TASKS) + " | average | normalised |")
    print("|---|---|" + "---|" * (len(TASKS) + 2))
    for name, acc in rows:
        avg = float(np.mean([acc[t] for t in TASKS]))
        norm = float(np.mean([100 * acc[t] / individual[t] for t in TASKS]))
        lam = f"{lambdas[name]:g}" if name in lambdas else ""
        print(f"| {name} | {lam} | " + " | ".join(f"{acc[t]:.1f}" for t in TASKS) +
              f" | {avg:.1f} | {norm:.1f} |")
        if name not in ("pre-trained", "individual"):
            table.append((name, acc, norm))
    svg(table, os.path.join(out, "results.svg"))
    print(f"\n(test split; lambda chosen on validation; chart: {out}/results.svg)")


if __name__ == "__main__":
    main()
